"""Running ``echobench run`` / ``echobench pretrain`` through the real CLI entry point on a dataset folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from echobench.cli import main

#: The smallest model and clips that exercise the full path; k = 1 because the fixtures' training banks are tiny.
TINY = [
    *("--set", "method.model=vit_tiny", "--set", "method.frames=4", "--set", "method.stride=1"),
    *("--set", "method.size=32", "--set", "method.patch=8", "--set", "method.tubelet=2"),
    *("--set", "pretrain.seed=0", "--set", "pretrain.batch_size=2"),
]
KNN = ["--set", "protocol.ks=[1]", "--set", "protocol.ci_resamples=50"]


def invoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI with ``argv`` (after ``echobench``); fail with its stderr unless it exits cleanly."""
    monkeypatch.setattr(sys, "argv", ["echobench", *argv])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def run_knn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dataset: str, root: Path, task: str
) -> dict:
    """``echobench run --method random_init --protocol knn`` on ``dataset`` at ``root``; the JSON summary."""
    argv = ["run", "--dataset", dataset, "--data-root", str(root), "--method", "random_init", "--protocol", "knn"]
    out = invoke(monkeypatch, capsys, [*argv, "--task", task, "--json", *TINY, *KNN])
    return json.loads(out)
