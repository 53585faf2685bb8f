"""``echobench run --protocol knn`` then ``--protocol linear`` for a method plugin on the tiny SynthEcho, through the
real CLI: the second run reuses the first one's checkpoint and embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import KNN, TINY, invoke

PRETRAIN = ["--set", "pretrain.steps=2"]
LINEAR = ["--set", "protocol.epochs=3", "--set", "protocol.ci_resamples=50", "--set", "protocol.lrs=[0.001]"]


def run_knn_and_linear(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    synth_root: Path,
    method: str,
    extra: list[str] | None = None,
) -> dict[str, dict]:
    """The JSON summaries of the two runs, by protocol."""
    base = ["run", "--dataset", "synthecho", "--data-root", str(synth_root), "--method", method, "--json"]
    settings = [*TINY, *PRETRAIN, *(extra or [])]
    return {
        "knn": json.loads(invoke(monkeypatch, capsys, [*base, "--protocol", "knn", *settings, *KNN])),
        "linear": json.loads(invoke(monkeypatch, capsys, [*base, "--protocol", "linear", *settings, *LINEAR])),
    }


def run_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI expecting a user error: exit code 2 and one line on stderr, which is returned."""
    import sys

    from echobench.cli import main

    monkeypatch.setattr(sys, "argv", ["echobench", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err
