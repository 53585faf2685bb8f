"""Training length in epochs: steps from the pretraining set's size, warm-up in epochs, the layer rule between steps
and epochs, unchanged hashes for runs in steps, and each method's paper recipe."""

from __future__ import annotations

import json
import math

import pytest

from echobench import registry
from echobench.config import PretrainConfig, apply_pretrain_overrides, pretrain_record, to_dict
from echobench.errors import UserError
from echobench.protocols.finetune import FinetuneConfig, hashed_settings, in_steps
from echobench.run_length import run_length, sized, steps_per_epoch, warmup_steps
from echobench.runner import resolve, resolve_pretraining
from echobench.train import lr_factor, scheduled
from tests.cli_run import TINY, invoke


def test_epochs_become_full_batches_of_the_pretraining_set() -> None:
    config = PretrainConfig(epochs=400, batch_size=8, warmup_epochs=40)
    # 7465 EchoNet-Dynamic training videos at batch 8: 933 full batches per pass, the last 1 video dropped.
    assert steps_per_epoch(7465, 8) == 933
    assert sized(config, 7465).steps == 400 * 933
    length = run_length(config, 7465)
    assert (length.steps, length.steps_per_epoch, length.warmup_steps) == (373_200, 933, 37_320)
    assert length.epochs == 400.0 and length.in_epochs
    # Fractional epochs round to the nearest step; sizing twice changes nothing.
    half = PretrainConfig(epochs=2.5, batch_size=4)
    assert sized(half, 10).steps == 5 and sized(sized(half, 10), 10).steps == 5


def test_a_run_in_steps_keeps_its_steps_and_fraction_warmup() -> None:
    config = PretrainConfig(steps=100, warmup_fraction=0.1, batch_size=8)
    assert sized(config, 478) is config
    length = run_length(config, 478)
    assert (length.steps, length.steps_per_epoch, length.warmup_steps) == (100, 59, 10)
    assert length.epochs == pytest.approx(100 / 59) and not length.in_epochs
    # Warm-up in epochs inside a run in steps, capped at the run.
    assert warmup_steps(PretrainConfig(steps=100, warmup_epochs=1), 59) == 59
    assert warmup_steps(PretrainConfig(steps=100, warmup_epochs=3), 59) == 100


def test_schedule_warms_up_over_the_epochs_given() -> None:
    config = sized(PretrainConfig(epochs=10, warmup_epochs=2, batch_size=4, lr=1e-3, lr_scaling="none"), 20)
    per_epoch = 5
    assert config.steps == 50
    for step in (0, 4, 9, 10, 30, 49):
        expected = 1e-3 * lr_factor(step, 50, 2 * per_epoch, config.min_lr_ratio)
        assert scheduled(config, step, per_epoch)[0] == pytest.approx(expected)
    assert scheduled(config, 9, per_epoch)[0] == pytest.approx(1e-3)
    assert scheduled(config, 4, per_epoch)[0] == pytest.approx(1e-3 * 5 / 10)


def test_a_layer_giving_steps_switches_the_run_to_steps() -> None:
    paper = apply_pretrain_overrides(PretrainConfig(), {"epochs": 400, "warmup_epochs": 40}, where="defaults")
    quick = apply_pretrain_overrides(paper, {"steps": 100}, where="profile quick pretrain")
    assert (quick.steps, quick.epochs, quick.warmup_epochs) == (100, None, None)
    again = apply_pretrain_overrides(quick, {"epochs": 2}, where="pretrain")
    assert again.epochs == 2
    kept = apply_pretrain_overrides(paper, {"steps": 100, "warmup_epochs": 1}, where="pretrain")
    assert (kept.epochs, kept.warmup_epochs) == (None, 1)
    with pytest.raises(UserError, match="either steps or epochs"):
        apply_pretrain_overrides(paper, {"steps": 100, "epochs": 3}, where="pretrain")
    with pytest.raises(UserError, match="pretrain.epochs must be > 0"):
        apply_pretrain_overrides(paper, {"epochs": 0}, where="pretrain")


def test_runs_in_steps_record_and_hash_what_they_did_before_epochs() -> None:
    record = pretrain_record(PretrainConfig())
    assert "epochs" not in record and "warmup_epochs" not in record
    assert record == {k: v for k, v in to_dict(PretrainConfig()).items() if k not in ("epochs", "warmup_epochs")}
    assert pretrain_record(PretrainConfig(epochs=3))["epochs"] == 3
    assert "epochs" not in hashed_settings(FinetuneConfig())


def test_finetuning_in_epochs_counts_full_batches_of_labelled_training_videos() -> None:
    cfg, per_epoch = in_steps(FinetuneConfig(batch_size=8, epochs=50, eval_every_epochs=1), 7465)
    assert (per_epoch, cfg.steps, cfg.eval_every) == (933, 46_650, 933)
    unchanged, _ = in_steps(FinetuneConfig(steps=500, eval_every=100), 7465)
    assert (unchanged.steps, unchanged.eval_every) == (500, 100)


@pytest.mark.parametrize(
    ("method", "epochs", "batch", "lr_effective", "warmup_epochs"),
    [
        ("discover", 400, 8, 1.5e-4, 40),
        ("vjepa", 300, 4, 2e-4, 20),
        ("vjepa_plain", 300, 4, 2e-4, 20),
        ("echocardmae", 1600, 64, 1e-4, 0),
        ("echovisionfm", 50, 64, 1e-4, 10),
        ("temporal_mae", 400, 64, 1.5e-4 * 64 / 256, 200),
        ("videomae", 400, 8, 1.5e-4, 40),
        ("sigma", 400, 8, 1.5e-4, 40),
        ("mgmae", 400, 8, 1.5e-4, 40),
        ("image_dino", 400, 8, 1.5e-4, 40),
    ],
)
def test_paper_profile_is_each_papers_recipe_in_epochs(method, epochs, batch, lr_effective, warmup_epochs) -> None:
    _, _, pretrain, _, _ = resolve_pretraining(method, None, "paper")
    assert (pretrain.epochs, pretrain.batch_size, pretrain.warmup_epochs) == (epochs, batch, warmup_epochs)
    assert pretrain.effective_lr == pytest.approx(lr_effective)
    _, _, quick, _, _ = resolve_pretraining(method, None, "quick")
    assert (quick.steps, quick.epochs, quick.warmup_epochs) == (100, None, None)


def test_discovers_baselines_run_at_discovers_geometry_and_echovisionfm_at_its_own() -> None:
    for name in ("videomae", "sigma", "mgmae"):
        _, config, _, _, _ = resolve_pretraining(name, None, "paper")
        geometry = (config.model, config.frames, config.stride, config.size, config.tubelet, config.mask_ratio)
        assert geometry == ("vit_base", 64, 3, 112, 2, 0.9), name
    _, own, _, _, _ = resolve_pretraining("echovisionfm", None, "paper")
    assert (own.frames, own.stride, own.size) == (16, 2, 224)
    assert registry.load_method("echovisionfm").profile_overrides["paper"].get("method") is None


def test_paper_profile_finetunes_in_epochs_unless_steps_are_set() -> None:
    resolved = resolve("random_init", "finetune-full", profile="paper")
    assert (resolved.protocol_config.epochs, resolved.protocol_config.eval_every_epochs) == (50, 1)
    stepped = resolve("random_init", "finetune-full", profile="paper", sets=["protocol.steps=7"])
    assert (stepped.protocol_config.steps, stepped.protocol_config.epochs) == (7, None)
    quick = resolve("random_init", "finetune-full", profile="quick")
    assert (quick.protocol_config.steps, quick.protocol_config.epochs) == (500, None)


def test_pretraining_in_epochs_trains_and_records_epochs_times_steps_per_epoch(
    synth_root, monkeypatch, capsys
) -> None:
    argv = ["run", "--method", "videomae", "--protocol", "knn", "--dataset", "synthecho"]
    argv += ["--data-root", str(synth_root), "--json", *TINY, "--set", "pretrain.epochs=2"]
    argv += ["--set", "protocol.ks=[1]", "--set", "protocol.ci_resamples=20"]
    summary = json.loads(invoke(monkeypatch, capsys, argv))
    record = json.loads(open(summary["result_path"]).read())
    length = record["pretrain_length"]
    train_videos = length["num_videos"]
    assert length["steps_per_epoch"] == train_videos // 2
    assert length["steps"] == 2 * length["steps_per_epoch"] == record["pretrained_steps"]
    assert length["epochs"] == 2.0 and length["unit"] == "epochs"
    assert record["pretrain_config"]["epochs"] == 2 and record["pretrain_config"]["steps"] == length["steps"]
    assert math.isclose(length["warmup_steps"], int(0.1 * length["steps"]))
