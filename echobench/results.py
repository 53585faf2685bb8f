"""Result files: one JSON per evaluation under
``results/<method>/<checkpoint-hash>/<dataset>/<protocol>-<task>.json``; leaderboards are built from these."""

from __future__ import annotations

import json
import math
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import torch

import echobench
from echobench.atomic import write_text_atomic
from echobench.paths import results_dir

RESULT_SCHEMA = 1


def result_path(method: str, checkpoint_hash: str, dataset: str, protocol: str, task: str) -> Path:
    return results_dir() / method / checkpoint_hash / dataset / f"{protocol}-{task}.json"


@cache
def git_commit() -> str | None:
    """Commit of the echobench source tree, when it is a git checkout (editable installs)."""
    source = Path(echobench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    import faiss
    import numpy
    import sklearn
    import timm

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__,
        "faiss": faiss.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def json_safe(value: Any) -> Any:
    """JSON has no NaN; undefined metrics (e.g. AUROC on one class) are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_result(path: Path, record: dict[str, Any]) -> Path:
    payload = {
        "schema": RESULT_SCHEMA,
        "echobench_version": echobench.__version__,
        "git_commit": git_commit(),
        "environment": environment(),
        **record,
    }
    write_text_atomic(path, json.dumps(json_safe(payload), indent=2, sort_keys=True) + "\n")
    return path
