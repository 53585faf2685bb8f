"""The supervised ceiling: masked losses and running target moments against hand computations, training labels
only (poisoned validation/test labels change no weight), and a task the dataset cannot label."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_run import TINY

from echobench.cli import main
from echobench.runner import pretrain_only
from echobench_plugins.supervised import Supervised, SupervisedConfig
from echobench_plugins.supervised.losses import masked_cross_entropy, masked_mse, merge_moments


def test_masked_cross_entropy_skips_missing_labels() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    labels = torch.tensor([0, -1, 1])
    hand = ((math.log(math.exp(2) + 1) - 2) + (math.log(math.exp(5) + math.exp(-5)) + 5)) / 2
    assert math.isclose(float(masked_cross_entropy(logits, labels)), hand, rel_tol=1e-6)
    empty = masked_cross_entropy(logits.requires_grad_(), torch.full((3,), -1))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_masked_mse_skips_missing_targets() -> None:
    prediction = torch.tensor([1.0, 2.0, 3.0])
    targets = torch.tensor([0.0, float("nan"), 5.0])
    assert math.isclose(float(masked_mse(prediction, targets)), (1.0 + 4.0) / 2)
    assert float(masked_mse(prediction, torch.full((3,), float("nan")))) == 0.0


def test_running_moments_equal_the_statistics_of_all_values_seen() -> None:
    values = np.random.default_rng(0).normal(55, 12, 23)
    count = mean = m2 = torch.zeros((), dtype=torch.float64)
    for chunk in (values[:1], values[1:9], values[9:9], values[9:]):
        count, mean, m2 = merge_moments(count, mean, m2, torch.from_numpy(chunk))
    assert int(count) == 23
    assert math.isclose(float(mean), values.mean(), rel_tol=1e-12)
    assert math.isclose(float((m2 / count).sqrt()), values.std(), rel_tol=1e-12)


def test_config_rejects_unknown_and_segmentation_tasks() -> None:
    with pytest.raises(Exception, match="ejection"):
        Supervised(SupervisedConfig(model="vit_tiny", task="ejection"))
    with pytest.raises(ValueError, match="lv_seg"):
        Supervised(SupervisedConfig(model="vit_tiny", task="lv_seg"))


def copy_with_labels(source: Path, target: Path, splits: set[str], factor: float) -> Path:
    """A copy of a SynthEcho folder whose EF labels of ``splits`` are multiplied by ``factor``."""
    shutil.copytree(source, target)
    table = pd.read_csv(target / "FileList.csv")
    rows = table["Split"].str.lower().isin(splits)
    table.loc[rows, "EF"] = (table.loc[rows, "EF"] * factor).clip(upper=99.0)
    table.to_csv(target / "FileList.csv", index=False)
    return target


def supervised_weights(root: Path, task: str) -> dict[str, torch.Tensor]:
    sets = [TINY[i + 1] for i in range(0, len(TINY), 2)] + [
        "pretrain.steps=3",
        f"method.task={task}",
        "data.pretrain_splits=[train, val, test]",
    ]
    pretrained = pretrain_only("supervised", sets, "quick", "synthecho", str(root))
    return {k: v.clone() for k, v in pretrained.method.state_dict().items()}


@pytest.mark.parametrize("task", ["ef", "ef_binary"])
def test_only_training_labels_reach_pretraining(synth_root: Path, tmp_path: Path, task: str) -> None:
    reference = supervised_weights(synth_root, task)
    poisoned_eval = copy_with_labels(synth_root, tmp_path / "eval", {"val", "test"}, 0.3)
    poisoned_train = copy_with_labels(synth_root, tmp_path / "train", {"train"}, 0.3)
    same = supervised_weights(poisoned_eval, task)
    assert reference.keys() == same.keys()
    assert all(torch.equal(reference[k], same[k]) for k in reference)
    # The control: changing training labels does change the weights, so the comparison can fail.
    changed = supervised_weights(poisoned_train, task)
    assert not all(torch.equal(reference[k], changed[k]) for k in reference)


def test_a_task_the_dataset_cannot_label_names_task_and_dataset(synth_root, monkeypatch, capsys) -> None:
    argv = ["echobench", "pretrain", "--method", "supervised", "--data-root", str(synth_root), *TINY]
    monkeypatch.setattr(sys, "argv", [*argv, "--set", "method.task=rvef", "--set", "pretrain.steps=1"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "task rvef" in errors[0] and "dataset synthecho" in errors[0]
