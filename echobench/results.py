"""Result files and their index.

One immutable JSON per evaluation under
``results/<method>/<checkpoint-hash>/<dataset>/<protocol>-<task>-<run-hash>.json``, where the run hash covers
everything that changes the number (checkpoint, protocol name, version and config, evaluation clips, task and its
version, seeds, echobench and plugin versions). Running the same evaluation again finds the file and reuses it;
a different setting writes a new file beside it. Each result also gets one small entry in ``results/index/``
(written atomically, one file per result, so concurrent runs never contend) that ``echobench results`` lists.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import echobench
from echobench.atomic import write_text_atomic
from echobench.config import stable_hash
from echobench.errors import UserError
from echobench.paths import results_dir
from echobench.protocols.base import ProtocolResult

RESULT_SCHEMA = 2


def run_hash(identity: dict[str, Any]) -> str:
    """Hash of everything that changes an evaluation's number (see :func:`evaluation_identity`)."""
    return stable_hash(identity, echobench.__version__)


def result_path(method: str, checkpoint_hash: str, dataset: str, protocol: str, task: str, run: str) -> Path:
    return results_dir() / method / checkpoint_hash / dataset / f"{protocol}-{task}-{run}.json"


def index_dir() -> Path:
    return results_dir() / "index"


def videos_hash(video_ids: Iterable[str]) -> str:
    """Order-free hash of a set of video ids; equal sets give equal hashes across runs and machines."""
    return stable_hash(sorted({str(v) for v in video_ids}))


def leakage(evaluated: dict[str, set[str]], pretrained_ids: set[str]) -> dict[str, Any]:
    """Per evaluation role, the hash and count of the videos it used and how many of them the encoder was
    pretrained on; ``evaluated_on_pretraining_videos`` is true when any *test* video was seen in pretraining."""
    overlap = {role: len(ids & pretrained_ids) for role, ids in sorted(evaluated.items())}
    return {
        "evaluated_videos_hash": {role: videos_hash(ids) for role, ids in sorted(evaluated.items())},
        "num_evaluated_videos": {role: len(ids) for role, ids in sorted(evaluated.items())},
        "pretraining_overlap": overlap,
        "evaluated_on_pretraining_videos": overlap.get("test", 0) > 0,
    }


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


def result_record(
    identity: dict[str, Any],
    result: ProtocolResult,
    provenance: dict[str, Any],
    primary_metric: str,
) -> dict[str, Any]:
    """The result JSON: what was evaluated (``identity``), where it came from (``provenance``) and the numbers;
    ``ci_unit``/``ci_units`` say what the ``ci95`` bootstrap resampled (patients or videos) and how many."""
    return {
        **identity,
        **provenance,
        "primary_metric": primary_metric,
        "metrics": result.metrics,
        "ci95": {k: list(v) for k, v in result.ci.items()},
        "ci_unit": result.ci_unit,
        "ci_units": result.ci_units,
        "val_metrics": result.val_metrics,
        "chosen": result.chosen,
        "per_seed": result.per_seed,
        "runs": result.runs,
        "summary": None if result.summary is None else result.summary.to_dict(orient="records"),
        "num_test_videos": int(result.predictions["video_id"].nunique()),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_result(path: Path, record: dict[str, Any]) -> Path:
    """Write the result file (replacing one of the same run hash only when the run was forced) and its index entry."""
    payload = {
        "schema": RESULT_SCHEMA,
        "echobench_version": echobench.__version__,
        "git_commit": git_commit(),
        "environment": environment(),
        **record,
        "result_path": str(path),
    }
    write_text_atomic(path, json.dumps(json_safe(payload), indent=2, sort_keys=True) + "\n")
    write_text_atomic(index_dir() / f"{record['run_hash']}.json", json.dumps(json_safe(index_entry(payload))) + "\n")
    return path


def index_entry(record: dict[str, Any]) -> dict[str, Any]:
    primary = record.get("primary_metric")
    return {
        "method": record["method"],
        "protocol": record["protocol"],
        "task": record["task"],
        "dataset": record["dataset"],
        "checkpoint_hash": record["checkpoint_hash"],
        "run_hash": record["run_hash"],
        "overrides": record.get("overrides", []),
        "created": record.get("created"),
        "primary_metric": primary,
        "value": record["metrics"].get(primary) if primary else None,
        "evaluated_on_pretraining_videos": record.get("evaluated_on_pretraining_videos"),
        "result_path": record["result_path"],
    }


def read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"result file {path} cannot be read ({exc}); delete it and run again with --force") from None


def protocol_result(record: dict[str, Any]) -> ProtocolResult:
    """A stored result as the protocol returned it (predictions read back from its CSV)."""
    return ProtocolResult(
        metrics=record["metrics"],
        ci={k: tuple(v) for k, v in record["ci95"].items()},
        chosen=record["chosen"],
        val_metrics=record["val_metrics"],
        predictions=pd.read_csv(record["predictions_csv"]),
        per_seed=record.get("per_seed") or {},
        summary=None if record.get("summary") is None else pd.DataFrame(record["summary"]),
        runs=record.get("runs"),
        ci_unit=record.get("ci_unit"),
        ci_units=record.get("ci_units"),
    )


def list_index() -> list[dict[str, Any]]:
    """Every indexed result whose file still exists, oldest first."""
    folder = index_dir()
    entries = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if Path(entry["result_path"]).is_file():
            entries.append(entry)
    return sorted(entries, key=lambda e: (e.get("created") or "", e["run_hash"]))
