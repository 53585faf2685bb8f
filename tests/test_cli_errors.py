import sys

import pytest
from echonet_fixture import write_echonet_fixture

from echobench.cli import main


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["echobench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--method", "videomea"], "did you mean 'videomae'"),
        (["run", "--method", "videomae", "--protocol", "nn"], "unknown protocol 'nn'"),
        (["run", "--method", "videomae", "--set", "steps=5"], "expected SECTION.KEY=VALUE"),
        (["run", "--method", "videomae", "--set", "method.mask_rato=0.5"], "did you mean 'mask_ratio'"),
        (["run", "--method", "videomae", "--set", "pretrain.steps=lots"], "must be an integer"),
        (["run", "--method", "videomae", "--task", "ef_anomly"], "did you mean 'ef_anomaly'"),
        (["run", "--method", "videomae", "--dataset", "echonet-dynamc"], "did you mean 'echonet-dynamic'"),
        (["run", "--method", "videomae", "--profile", "fast"], "unknown profile 'fast'"),
        (["run", "--method", "videomae", "--set", "protocol.eval_clips.count=3"], "eval_clips has no field"),
        (["run", "--method", "videomae", "--dataset", "echonet-dynamic"], "pass --data-root"),
        (["list", "plugins"], "cannot list 'plugins'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(monkeypatch, capsys, isolated_home, args, message):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert not (isolated_home / "checkpoints").exists()


def test_wrong_data_root_names_missing_file(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        "--method",
        "random_init",
        "--dataset",
        "echonet-dynamic",
        "--data-root",
        str(tmp_path),
    )
    assert code == 2 and "FileList.csv" in err


def test_task_without_labels_fails_before_any_work(monkeypatch, capsys, tmp_path, isolated_home):
    root = write_echonet_fixture(tmp_path / "fx", videos=6, frames=12)
    (root / "FileListExtra.csv").unlink()
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        "--method",
        "random_init",
        "--dataset",
        "echonet-dynamic",
        "--data-root",
        str(root),
        "--task",
        "mi",
    )
    assert code == 2 and "has no labels for task mi" in err
    assert not (isolated_home / "decoded").exists()


def test_clip_longer_than_every_video(monkeypatch, capsys, tmp_path):
    root = write_echonet_fixture(tmp_path / "fx", videos=6, frames=12)
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        "--method",
        "random_init",
        "--dataset",
        "echonet-dynamic",
        "--data-root",
        str(root),
        "--task",
        "ef",
        "--set",
        "method.frames=16",
        "--set",
        "method.stride=4",
    )
    assert code == 2 and "longer than every video" in err
