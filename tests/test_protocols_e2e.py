"""Every protocol of the suite through the real CLI on a tiny SynthEcho, for a pretrained and a random encoder."""

from __future__ import annotations

import json
import shutil
import sys

import pandas as pd
import pytest
from test_end_to_end import TINY, mlflow_runs, run_json

from echobench.cli import main
from echobench.data.synthecho import SynthEchoDataset

CI = ["--set", "protocol.ci_resamples=50"]
MODEL = [arg for pair in zip(TINY[0::2], TINY[1::2], strict=True) for arg in pair if "ci_resamples" not in pair[1]]
SETTINGS: dict[str, list[str]] = {
    "linear": ["--set", "protocol.epochs=5", "--set", "protocol.ci_resamples=50"],
    "mlp": ["--set", "protocol.epochs=5", "--set", "protocol.ci_resamples=50"],
    "attentive": ["--set", "protocol.epochs=2", "--set", "protocol.ci_resamples=50"],
    "stff": ["--set", "protocol.epochs=1", "--set", "protocol.ci_resamples=50"],
    "finetune-partial": [
        "--set",
        "protocol.steps=4",
        "--set",
        "protocol.eval_every=2",
        "--set",
        "protocol.ci_resamples=50",
    ],
    "finetune-full": [
        "--set",
        "protocol.steps=4",
        "--set",
        "protocol.eval_every=2",
        "--set",
        "protocol.ci_resamples=50",
    ],
    "label-sweep": ["--set", "protocol.inner_config={epochs: 3, ci_resamples: 20}"],
    "kfold": ["--set", "protocol.inner_config={epochs: 3, ci_resamples: 20}"],
    "clip-variance": [
        "--set",
        "protocol.num_starts=3",
        "--set",
        "protocol.epochs=3",
        "--set",
        "protocol.ci_resamples=50",
    ],
    "segmentation": ["--set", "protocol.epochs=2", "--set", "protocol.ci_resamples=50"],
}


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    """One home per module: each method pretrains and encodes once for all its protocols."""
    return tmp_path_factory.mktemp("suite-home")


@pytest.mark.parametrize("method", ["random_init", "videomae"])
def test_every_protocol_runs_end_to_end(monkeypatch, capsys, synth_root, shared_home, method) -> None:
    monkeypatch.setenv("ECHOBENCH_HOME", str(shared_home))
    summaries = {}
    for protocol, extra in SETTINGS.items():
        summary = run_json(monkeypatch, capsys, synth_root, method, *extra, protocol=protocol, settings=MODEL)
        record = json.loads(open(summary["result_path"]).read())
        assert record["protocol"] == protocol and record["metrics"], protocol
        assert record["mlflow_run_id"] == summary["mlflow_run_id"]
        assert record["frozen_encoder"] is not protocol.startswith("finetune")
        # Every protocol's intervals resample the patients of the videos it tested (SynthEcho has several
        # videos per patient), and the result says so.
        tested = pd.read_csv(record["predictions_csv"]).drop_duplicates("video_id")
        assert (record["ci_unit"], record["ci_units"]) == ("patient", tested["patient_id"].nunique()), protocol
        assert record["ci_units"] < len(tested), protocol
        summaries[protocol] = summary
    sweep = summaries["label-sweep"]
    assert [row["fraction"] for row in sweep["summary"]] == [0.1, 0.2, 0.5, 1.0]
    assert all(len(sweep["per_seed"][f"mae@{f:g}"]) == 3 for f in (0.1, 0.2, 0.5, 1.0))
    sizes = {(run["fraction"], run["seed"]): run["n_train"] for run in sweep["runs"]}
    hashes = {(run["fraction"], run["seed"]): run["train_videos_hash"] for run in sweep["runs"]}
    assert len(sizes) == 4 * 3 and all(sizes[(0.1, s)] <= sizes[(0.5, s)] <= sizes[(1.0, s)] for s in (0, 1, 2))
    # At fraction 1.0 every seed trains on the whole labelled training split; below it the subsets differ.
    assert len({hashes[(1.0, s)] for s in (0, 1, 2)}) == 1
    assert len({hashes[(0.5, s)] for s in (0, 1, 2)}) > 1
    assert len({hashes[(f, 0)] for f in (0.1, 0.2, 0.5, 1.0)}) == 4
    assert {"mae", "mae_sd", "mae_pooled"} <= set(summaries["kfold"]["metrics"])
    assert "mae_pooled" in summaries["kfold"]["ci95"]
    assert {"mean_sd", "metric_spread"} <= set(summaries["clip-variance"]["metrics"])
    assert {"dice", "iou"} <= set(summaries["segmentation"]["metrics"])
    runs = mlflow_runs(shared_home, "echobench-eval")
    names = {r.data.tags["echobench.protocol"] for r in runs if r.data.tags["echobench.method"] == method}
    assert names == set(SETTINGS)
    # Frozen protocols and wrappers never encode a split twice: train, val, test (+ tokens, clip starts, traced).
    encodings = list((shared_home / "embeddings" / method).glob("*.safetensors"))
    assert len(encodings) <= 3 * 4


def _linear_with_two_seeds(monkeypatch, capsys, synth_root, *extra: str) -> dict:
    return run_json(
        monkeypatch,
        capsys,
        synth_root,
        "random_init",
        "--seeds",
        "2",
        *extra,
        *SETTINGS["linear"],
        protocol="linear",
        settings=MODEL,
    )


def test_seeds_repeat_training_dependent_protocols(monkeypatch, capsys, synth_root) -> None:
    summary = _linear_with_two_seeds(monkeypatch, capsys, synth_root, "--set", "protocol.solver=sgd")
    assert summary["seeds"] == 2
    assert len(summary["per_seed"]["mae"]) == 2
    assert summary["metrics"]["mae"] == pytest.approx(sum(summary["per_seed"]["mae"]) / 2)
    assert [row["seed"] for row in summary["summary"]] == [0, 1]
    # The interval is that of the two seeds' mean, so it brackets the mean rather than the first seed alone.
    low, high = summary["ci95"]["mae"]
    assert low <= summary["metrics"]["mae"] <= high


def test_seeds_do_not_repeat_a_closed_form_probe(monkeypatch, capsys, synth_root) -> None:
    summary = _linear_with_two_seeds(monkeypatch, capsys, synth_root)
    # Ridge reaches the same optimum from every seed: one fit, no per-seed rows that would only repeat it.
    assert not summary.get("per_seed")
    assert summary["chosen"]["solver"] == "closed_form" and "solver@seed=1" not in summary["chosen"]


def test_test_time_clip_aggregation_setting(monkeypatch, capsys, synth_root, isolated_home) -> None:
    summary = run_json(
        monkeypatch,
        capsys,
        synth_root,
        "random_init",
        "--set",
        "protocol.clips=3",
        "--set",
        "protocol.aggregate=any",
        "--task",
        "ef_binary",
        *SETTINGS["linear"],
        protocol="linear",
        settings=MODEL,
    )
    record = json.loads(open(summary["result_path"]).read())
    assert record["eval_clips"] == {"start": "evenly", "num_clips": 3}
    assert record["protocol_config"]["aggregate"] == "any"


def test_finetune_selection_never_reads_test_labels(monkeypatch, capsys, synth_root, tmp_path) -> None:
    poisoned = shutil.copytree(synth_root, tmp_path / "poisoned")
    files = pd.read_csv(poisoned / "FileList.csv")
    test = files["Split"].str.upper() == "TEST"
    files.loc[test, "EF"] = 100.0 - files.loc[test, "EF"]
    files.to_csv(poisoned / "FileList.csv", index=False)
    outcomes = []
    for name, root in (("clean", synth_root), ("poisoned", poisoned)):
        monkeypatch.setenv("ECHOBENCH_HOME", str(tmp_path / name))
        outcomes.append(
            run_json(
                monkeypatch,
                capsys,
                root,
                "random_init",
                *SETTINGS["finetune-partial"],
                protocol="finetune-partial",
                settings=MODEL,
            )
        )
    clean, dirty = outcomes
    assert clean["chosen"] == dirty["chosen"]
    assert clean["val_metrics"] == dirty["val_metrics"]
    assert clean["metrics"] != dirty["metrics"]


@pytest.mark.parametrize(
    ("protocol", "args", "message"),
    [
        ("label-sweep", ["--set", "protocol.fractions=[0.5,1.5]"], "outside (0, 1]"),
        ("label-sweep", ["--set", "protocol.fractions=[0]"], "outside (0, 1]"),
        ("kfold", ["--set", "protocol.folds=500"], "500 folds but only"),
        ("linear", ["--set", "protocol.clips=0"], "protocol.clips"),
        ("label-sweep", ["--set", "protocol.inner=kfold"], "itself a wrapper"),
        ("finetune-partial", ["--set", "protocol.unfreeze=-3"], "unfreeze"),
    ],
)
def test_bad_protocol_input_exits_2_before_any_training(
    monkeypatch, capsys, synth_root, isolated_home, protocol, args, message
) -> None:
    argv = ["echobench", "run", "--method", "videomae", "--protocol", protocol, "--data-root", str(synth_root)]
    monkeypatch.setattr(sys, "argv", [*argv, *MODEL, *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (isolated_home / "checkpoints").exists()
    assert not (isolated_home / "decoded").exists()


def test_sweep_and_kfold_read_the_embedding_cache_and_test_every_video_once(
    monkeypatch, capsys, synth_root, isolated_home
) -> None:
    run_json(monkeypatch, capsys, synth_root, "random_init", *SETTINGS["linear"], protocol="linear", settings=MODEL)
    cached = sorted((isolated_home / "embeddings").rglob("*.safetensors"))
    monkeypatch.setattr("echobench.embed.EvalClipDataset", None)  # any fresh encode would now fail
    sweep = run_json(
        monkeypatch, capsys, synth_root, "random_init", *SETTINGS["label-sweep"], protocol="label-sweep", settings=MODEL
    )
    kfold = run_json(
        monkeypatch, capsys, synth_root, "random_init", *SETTINGS["kfold"], protocol="kfold", settings=MODEL
    )
    assert sorted((isolated_home / "embeddings").rglob("*.safetensors")) == cached
    # Fraction 1.0 trains on every training video of the fixture.
    assert sweep["summary"][-1]["n_train"] == len(SynthEchoDataset(synth_root).split_table("train"))
    folds = pd.read_csv(json.loads(open(kfold["result_path"]).read())["predictions_csv"])
    files = pd.read_csv(synth_root / "FileList.csv")
    pooled = files[files["Split"].str.upper().isin(["TRAIN", "VAL"])]["FileName"]
    assert sorted(folds["video_id"]) == sorted(pooled)
    assert folds.groupby("video_id")["fold"].nunique().max() == 1
