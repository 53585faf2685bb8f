"""MLflow store failures and a plugin refusing its config are one-line user errors, never tracebacks."""

from __future__ import annotations

import sys

import pytest
from cli_run import KNN, TINY
from echonet_fixture import write_echonet_fixture

from echobench.cli import main
from echobench.errors import UserError
from echobench.pretrain import build_method
from echobench_plugins.videomae import VideoMAE, VideoMAEConfig


def test_damaged_mlflow_store_is_one_line_naming_the_store(monkeypatch, capsys, tmp_path, isolated_home):
    root = write_echonet_fixture(tmp_path / "fx", videos=6, frames=12)
    store = isolated_home / "mlflow" / "mlflow.db"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"this is not a SQLite database" * 100)
    argv = ["run", "--method", "random_init", "--dataset", "echonet-dynamic", "--data-root", str(root)]
    monkeypatch.setattr(sys, "argv", ["echobench", *argv, "--task", "ef", *TINY, *KNN])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith(f"error: MLflow store sqlite:///{store} failed (")
    assert f"move {store} aside" in errors[0]


def test_plugin_value_error_at_construction_is_a_config_error():
    config = VideoMAEConfig(model="vit_tiny", frames=4, size=32, patch=8, mask_ratio=1.5)
    with pytest.raises(UserError) as info:
        build_method(VideoMAE, config, seed=0)
    assert str(info.value) == (
        "method config of 'videomae' rejected: mask_ratio must be in (0, 1), got 1.5; "
        "fix it with --set method.FIELD=VALUE"
    )
