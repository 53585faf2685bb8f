"""Where echobench keeps caches, results and tracking data."""

from __future__ import annotations

import os
from pathlib import Path


def echobench_home() -> Path:
    """``$ECHOBENCH_HOME``, default ``~/.cache/echobench``."""
    return Path(os.environ.get("ECHOBENCH_HOME", Path.home() / ".cache" / "echobench")).expanduser()


def data_dir() -> Path:
    return echobench_home() / "data"


def decode_cache_dir() -> Path:
    return echobench_home() / "decoded"


def checkpoints_dir() -> Path:
    return echobench_home() / "checkpoints"


def embeddings_dir() -> Path:
    return echobench_home() / "embeddings"


def results_dir() -> Path:
    return echobench_home() / "results"
