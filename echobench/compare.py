"""``echobench compare A B``: a paired comparison of two result files on the test videos both predicted.

The metric difference ``metric(A) − metric(B)`` gets a paired percentile bootstrap interval (videos, or patients
when the predictions carry ``patient_id``, resampled together for both methods). The Wilcoxon signed-rank test
runs on per-unit differences of a per-video quantity: the absolute error (regression), the absolute error of the
positive-class probability (classification), or the per-video value of the metric itself (segmentation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echobench.data.tasks import TASKS
from echobench.errors import UserError
from echobench.leaderboard import RESULT_KEYS, ResultFile, TaskSpec, aligned, metric_arrays, per_video
from echobench.stats import paired_metric_bootstrap, unit_means, wilcoxon_p


def load_result(path: Path) -> ResultFile:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read result {path}: {exc}; pass a result JSON written by echobench run") from None
    if not isinstance(record, dict) or not RESULT_KEYS <= record.keys():
        raise UserError(f"{path} is not an echobench result (needs {sorted(RESULT_KEYS)}); pass a result JSON")
    return ResultFile(Path(path), record)


def per_video_loss(frame: pd.DataFrame, kind: str, metric: str) -> np.ndarray:
    """The per-video quantity the Wilcoxon test compares (see the module docstring)."""
    if kind == "regression":
        return np.abs(frame["prediction"].to_numpy(float) - frame["target"].to_numpy(float))
    if kind == "classification":
        return np.abs(frame["target"].to_numpy(float) - frame["score"].to_numpy(float))
    return frame[metric].to_numpy(float)


def compare_results(path_a: Path, path_b: Path, metric: str | None = None, resamples: int = 2000) -> dict[str, Any]:
    a, b = load_result(path_a), load_result(path_b)
    for key in ("dataset", "task"):
        if a.record.get(key) != b.record.get(key):
            raise UserError(
                f"{path_a} and {path_b} differ in {key} ({a.record.get(key)} vs {b.record.get(key)}); "
                "compare results of one dataset and task"
            )
    task_name = a.record["task"]
    task = TASKS.get(task_name)
    if task is None:
        raise UserError(f"task {task_name!r} of {path_a} is not a known task; update echobench or the result")
    chosen = metric or task.primary_metric
    frames = []
    for result in (a, b):
        frame = result.predictions()
        if frame is None:
            raise UserError(
                f"{result.path} has no predictions file ({result.path.stem}.predictions.csv beside it or its "
                "predictions_csv); paired comparisons need per-video predictions"
            )
        frames.append(per_video(frame))
    left, right = aligned(frames[0], frames[1])
    if len(left) < 2:
        raise UserError(f"{path_a} and {path_b} share {len(left)} test video(s); they must predict the same videos")
    inputs_a, inputs_b = metric_arrays(left, task.kind, chosen), metric_arrays(right, task.kind, chosen)
    if inputs_a is None or inputs_b is None:
        raise UserError(f"metric {chosen!r} cannot be recomputed from the predictions of task {task_name}")
    probe = inputs_a[0](*inputs_a[1])
    if chosen not in probe:
        raise UserError(f"unknown metric {chosen!r} for task {task_name}; available: {', '.join(sorted(probe))}")
    groups = left["patient_id"].astype(str).tolist() if "patient_id" in left.columns else None
    diff, low, high = paired_metric_bootstrap(
        inputs_a[0], chosen, inputs_a[1], inputs_b[1], groups=groups, n_resamples=resamples
    )
    losses = per_video_loss(left, task.kind, chosen) - per_video_loss(right, task.kind, chosen)
    units = unit_means(losses, groups)
    tied = bool(low <= 0.0 <= high)
    spec = TaskSpec(task.name, (chosen,), chosen, task.higher_is_better)
    better = "A" if (diff > 0) == spec.higher_is_better else "B"
    verdict = "no significant difference (CI covers 0)" if tied else f"{better} is better (CI excludes 0)"
    return {
        "method_a": a.record["method"],
        "method_b": b.record["method"],
        "dataset": a.record["dataset"],
        "task": task_name,
        "metric": chosen,
        "value_a": float(probe[chosen]),
        "value_b": float(inputs_b[0](*inputs_b[1])[chosen]),
        "difference": diff,
        "ci_low": low,
        "ci_high": high,
        "wilcoxon_p": wilcoxon_p(units),
        "n_units": int(units.size),
        "unit": "patient" if groups is not None else "video",
        "tied": tied,
        "verdict": verdict,
    }
