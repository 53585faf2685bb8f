"""Every test runs against its own ``$ECHOBENCH_HOME`` so caches, checkpoints and MLflow never leak between tests
or into the user's cache."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "echobench-home"
    monkeypatch.setenv("ECHOBENCH_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small SynthEcho (40 videos of 24 frames) shared by the end-to-end tests."""
    from echobench.data.synthecho import synthesize

    return synthesize(tmp_path_factory.mktemp("synth") / "se", videos=40, seed=0, frames=24, progress=False)
