"""``--dry-run``: the plan of a run or a pretraining, resolved as the run would be, with nothing decoded or trained."""

from __future__ import annotations

import json
import sys

import pytest

from echobench.cli import main
from echobench.paths import checkpoints_dir, decode_cache_dir
from tests.cli_run import invoke


def plan(monkeypatch, capsys, synth_root, *argv: str) -> dict:
    out = invoke(monkeypatch, capsys, [*argv, "--dataset", "synthecho", "--data-root", str(synth_root), "--json"])
    return json.loads(out)


@pytest.mark.parametrize(("method", "epochs"), [("discover", 400), ("vjepa", 300), ("echocardmae", 1600)])
def test_paper_profile_plan_gives_the_papers_epochs_as_steps(monkeypatch, capsys, synth_root, method, epochs) -> None:
    result = plan(monkeypatch, capsys, synth_root, "run", "--method", method, "--profile", "paper", "--dry-run")
    pre = result["pretrain"]
    from echobench.data.synthecho import SynthEchoDataset

    train = int((SynthEchoDataset(synth_root).table["split"] == "train").sum())
    assert pre["num_videos"] == train
    assert pre["steps_per_epoch"] == max(1, train // pre["batch_size"])
    # EchoCardMAE's batch of 64 is larger than the fixture's training split: the plan says so, the run would stop.
    assert any("fewer than one batch" in problem for problem in result["problems"]) == (train < pre["batch_size"])
    assert pre["epochs"] == epochs and pre["steps"] == epochs * pre["steps_per_epoch"]
    assert pre["lr_effective"] == pytest.approx(pre["lr"])
    values = {row["key"]: row for row in result["values"]}
    assert values["pretrain.epochs"]["source"].startswith("paper")
    assert values["pretrain.steps"]["set_by"] == "derived"
    # Nothing was trained or decoded: no checkpoint folder, no decode cache.
    assert not result["checkpoint"]["complete"]
    assert not checkpoints_dir().exists() or not any(checkpoints_dir().rglob("*.safetensors"))
    assert not decode_cache_dir().exists() or not any(decode_cache_dir().iterdir())


def test_plan_names_every_layer_and_the_problems_a_run_would_stop_on(monkeypatch, capsys, synth_root) -> None:
    argv = ["run", "--method", "discover", "--profile", "paper", "--dry-run", "--set", "pretrain.lr=3e-4"]
    result = plan(monkeypatch, capsys, synth_root, *argv)
    values = {row["key"]: row for row in result["values"]}
    assert values["pretrain.lr"] == {"key": "pretrain.lr", "value": 3e-4, "set_by": "--set", "source": "set by the user"}
    assert values["pretrain.batch_size"]["set_by"] == "discover defaults"
    assert values["pretrain.min_lr_ratio"]["source"].startswith("choice")
    # DISCOVER's 64-frame clips at stride 3 span 190 frames, longer than the fixture's 24-frame videos.
    assert any("spans 190 frames" in problem for problem in result["problems"])
    quick = plan(monkeypatch, capsys, synth_root, "run", "--method", "videomae", "--dry-run")
    rows = {row["key"]: row for row in quick["values"]}
    assert quick["pretrain"]["steps"] == 100 and quick["pretrain"]["unit"] == "steps"
    assert rows["pretrain.steps"]["set_by"] == "profile quick"
    assert rows["pretrain.steps"]["source"].startswith("quick profile")


def test_pretrain_dry_run_and_finetune_length_in_epochs(monkeypatch, capsys, synth_root) -> None:
    pre = plan(monkeypatch, capsys, synth_root, "pretrain", "--method", "videomae", "--profile", "paper", "--dry-run")
    assert pre["model"]["model"] == "vit_base" and pre["model"]["frames"] == 64
    assert pre["pretrain"]["epochs"] == 400 and "protocol" not in pre
    argv = ["run", "--method", "random_init", "--protocol", "finetune-full", "--profile", "paper", "--dry-run"]
    run = plan(monkeypatch, capsys, synth_root, *argv)
    length = run["protocol"]["length"]
    assert length["epochs"] == 50 and length["steps"] == 50 * length["steps_per_epoch"]
    assert length["eval_every"] == length["steps_per_epoch"]
    assert run["pretrain"]["trainable"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--method", "discovr", "--dry-run"], "did you mean 'discover'"),
        (["pretrain", "--method", "nope", "--dry-run"], "unknown method"),
    ],
)
def test_dry_run_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, argv, message) -> None:
    monkeypatch.setattr(sys, "argv", ["echobench", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_dry_run_on_a_folder_without_label_tables_is_exit_2(monkeypatch, capsys, tmp_path) -> None:
    argv = ["run", "--method", "discover", "--dataset", "echonet-dynamic", "--data-root", str(tmp_path), "--dry-run"]
    monkeypatch.setattr(sys, "argv", ["echobench", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
