"""``echobench compare A B``: a paired comparison of two results on the test videos both predicted; a side may be
several results of one method (its pretraining seeds), scored as their mean.

The metric difference ``metric(A) − metric(B)`` gets a paired percentile bootstrap interval (videos, or patients
when the predictions carry ``patient_id``, resampled together for both methods). The Wilcoxon signed-rank test
runs on per-unit differences of a per-video quantity: the absolute error (regression), the absolute error of the
positive-class probability (classification), or the per-video value of the metric itself (segmentation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echobench.data.tasks import TASKS
from echobench.errors import UserError
from echobench.leaderboard import RESULT_KEYS, ResultFile, TaskSpec, metric_arrays, per_video
from echobench.stats import paired_mean_bootstrap, unit_means, wilcoxon_p


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


def compare_results(
    a: Path | Sequence[Path], b: Path | Sequence[Path], metric: str | None = None, resamples: int = 2000
) -> dict[str, Any]:
    """``metric(A) − metric(B)`` on the test videos every result predicted. A side given as several results (the
    repeats of one method, e.g. pretraining seeds) is scored as the mean over them, every result on the same
    resamples, so the interval is that of the difference of the two means."""
    paths_a, paths_b = _paths(a), _paths(b)
    results_a, results_b = [load_result(p) for p in paths_a], [load_result(p) for p in paths_b]
    first = results_a[0]
    for other in [*results_a[1:], *results_b]:
        for key in ("dataset", "task"):
            if first.record.get(key) != other.record.get(key):
                raise UserError(
                    f"{first.path} and {other.path} differ in {key} ({first.record.get(key)} vs "
                    f"{other.record.get(key)}); compare results of one dataset and task"
                )
    for side in (results_a, results_b):
        methods = sorted({r.record["method"] for r in side})
        if len(methods) > 1:
            raise UserError(
                f"the results of one side are of methods {', '.join(methods)}; a side's results must be repeats "
                "of one method (e.g. its pretraining seeds)"
            )
    task_name = first.record["task"]
    task = TASKS.get(task_name)
    if task is None:
        raise UserError(f"task {task_name!r} of {first.path} is not a known task; update echobench or the result")
    chosen = metric or task.primary_metric
    frames = _shared_videos([_predictions(r) for r in (*results_a, *results_b)])
    if len(frames[0]) < 2:
        raise UserError(
            f"{first.path} and {results_b[0].path} share {len(frames[0])} test video(s); they must predict the same "
            "videos"
        )
    inputs = [metric_arrays(frame, task.kind, chosen) for frame in frames]
    if any(got is None for got in inputs):
        raise UserError(f"metric {chosen!r} cannot be recomputed from the predictions of task {task_name}")
    metric_fn = inputs[0][0]
    values = [metric_fn(*got[1]) for got in inputs]
    if chosen not in values[0]:
        raise UserError(f"unknown metric {chosen!r} for task {task_name}; available: {', '.join(sorted(values[0]))}")
    runs_a, runs_b = [got[1] for got in inputs[: len(results_a)]], [got[1] for got in inputs[len(results_a) :]]
    groups = frames[0]["patient_id"].astype(str).tolist() if "patient_id" in frames[0].columns else None
    diff, low, high = paired_mean_bootstrap(metric_fn, chosen, runs_a, runs_b, groups=groups, n_resamples=resamples)
    losses = [per_video_loss(frame, task.kind, chosen) for frame in frames]
    units = unit_means(np.mean(losses[: len(results_a)], axis=0) - np.mean(losses[len(results_a) :], axis=0), groups)
    tied = bool(low <= 0.0 <= high)
    spec = TaskSpec(task.name, (chosen,), chosen, task.higher_is_better)
    better = "A" if (diff > 0) == spec.higher_is_better else "B"
    verdict = "no significant difference (CI covers 0)" if tied else f"{better} is better (CI excludes 0)"
    return {
        "method_a": first.record["method"],
        "method_b": results_b[0].record["method"],
        "dataset": first.record["dataset"],
        "task": task_name,
        "metric": chosen,
        "value_a": float(np.mean([v[chosen] for v in values[: len(results_a)]])),
        "value_b": float(np.mean([v[chosen] for v in values[len(results_a) :]])),
        "results_a": len(results_a),
        "results_b": len(results_b),
        "difference": diff,
        "ci_low": low,
        "ci_high": high,
        "wilcoxon_p": wilcoxon_p(units),
        "n_units": int(units.size),
        "unit": "patient" if groups is not None else "video",
        "tied": tied,
        "verdict": verdict,
    }


def _paths(side: Path | Sequence[Path]) -> list[Path]:
    paths = [Path(side)] if isinstance(side, str | Path) else [Path(p) for p in side]
    if not paths:
        raise UserError("a side of the comparison has no result; pass at least one result JSON per method")
    return paths


def _predictions(result: ResultFile) -> pd.DataFrame:
    frame = result.predictions()
    if frame is None:
        raise UserError(
            f"{result.path} has no predictions file ({result.path.stem}.predictions.csv beside it or its "
            "predictions_csv); paired comparisons need per-video predictions"
        )
    return per_video(frame)


def _shared_videos(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Every frame's rows for the videos all of them predicted, in the first frame's order."""
    shared = set.intersection(*(set(frame["video_id"]) for frame in frames))
    order = [video for video in frames[0]["video_id"] if video in shared]
    return [frame.set_index("video_id").loc[order].reset_index() for frame in frames]
