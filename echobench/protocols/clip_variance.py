"""Clip-start variance (EchoCardMAE Fig. 2): how much a video's prediction depends on where its clip starts.

Input: one prediction per clip for ``N`` evenly spaced clip starts per video (a regression value, or the
positive-class probability for classification); ``clip_number`` is a clip's start rank ``r`` (0 = earliest).

Reported, all in ``metrics``:

* the headline metrics of the all-clip average (one averaged prediction per video; for classification every
  classification metric, the class being ``average >= 0.5`` and the score the average itself);
* ``mean_sd`` and ``median_sd``: the mean and median over videos of the per-video standard deviation of the
  prediction across its starts (``ddof = 1``, the sample SD: the ``N`` starts sample the possible starts; a
  video with a single clip has SD NaN and is left out of both);
* the spread metric computed separately for each start rank (rank ``r`` over all videos), as
  ``<metric>@start=<r>``, and over ranks ``metric_min``, ``metric_max``, ``metric_spread`` (max - min) and
  ``metric_sd`` (``ddof = 1``; NaN with one rank). The spread metric is the task's primary metric for
  regression and AUROC for classification, because AUROC is threshold-free: a threshold metric would mix the
  start-to-start change of the score with where the scores sit relative to 0.5. ``chosen["spread_metric"]``
  names it.

``ci`` holds percentile bootstrap intervals over videos (patients when ``groups`` is given) of the headline
metrics and of ``mean_sd`` and ``median_sd``. ``predictions`` has one row per video with ``sd`` and ``n_clips``
besides the usual columns (and ``patient_id`` when known).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from echobench.data.tasks import Task
from echobench.errors import UserError
from echobench.metrics import bootstrap_ci, classification_metrics, regression_metrics
from echobench.protocols.base import ProtocolResult
from echobench.protocols.scoring import interval_unit

SD_DDOF = 1
CLASSIFICATION_SPREAD_METRIC = "auroc"


def clip_variance(
    clip_predictions: np.ndarray,
    clip_video: np.ndarray,
    clip_number: np.ndarray,
    targets: np.ndarray,
    video_ids: list[str],
    task: Task,
    ci_resamples: int,
    seed: int,
    groups: Sequence[str] | None = None,
) -> ProtocolResult:
    """Per-video spread of predictions across clip starts and per-start metrics; see the module docstring.

    ``groups`` (each video's patient id) makes the intervals resample patients."""
    preds = np.asarray(clip_predictions, dtype=np.float64)
    clip_video = np.asarray(clip_video)
    clip_number = np.asarray(clip_number)
    targets = np.asarray(targets)
    counts = _check_inputs(preds, clip_video, clip_number, targets, video_ids, task, ci_resamples)
    average = np.bincount(clip_video, weights=preds, minlength=len(video_ids)) / counts
    sd = _per_video_sd(preds, clip_video, average, counts)
    spread_name = CLASSIFICATION_SPREAD_METRIC if task.is_classification else task.primary_metric
    ranks = np.unique(clip_number)
    per_rank = np.array(
        [_metrics(task, targets[clip_video[clip_number == r]], preds[clip_number == r])[spread_name] for r in ranks]
    )
    metrics = _metrics(task, targets, average)
    metrics |= {f"{spread_name}@start={int(r)}": float(v) for r, v in zip(ranks, per_rank, strict=True)}
    metrics |= _sd_summary(sd) | _rank_summary(per_rank)
    ci = _intervals(task, targets, average, sd, ci_resamples, seed, groups)
    predictions = _predictions_frame(task, video_ids, targets, average, sd, counts)
    if groups is not None:
        predictions["patient_id"] = list(groups)
    return ProtocolResult(
        metrics=metrics,
        ci=ci,
        chosen={"spread_metric": spread_name, "num_starts": len(ranks), "sd_ddof": SD_DDOF},
        val_metrics={},
        predictions=predictions,
        **interval_unit(ci, groups, len(video_ids)),
    )


def _per_video_sd(preds: np.ndarray, clip_video: np.ndarray, average: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sample SD of each video's clip predictions; NaN for a video with a single clip."""
    # Deviations from the video mean avoid the cancellation of the sum-of-squares formula.
    squares = np.bincount(clip_video, weights=(preds - average[clip_video]) ** 2, minlength=len(counts))
    dof = counts - SD_DDOF
    return np.sqrt(np.divide(squares, dof, out=np.full(len(counts), np.nan), where=dof > 0))


def _nan_stat(fn: Callable[[np.ndarray], Any], values: np.ndarray) -> float:
    """``fn`` (a NaN-ignoring reduction) of ``values``; NaN when no value is finite, without numpy's warning."""
    return float(fn(values)) if np.isfinite(values).any() else float("nan")


def _metrics(task: Task, targets: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    if task.is_classification:
        return classification_metrics(targets, _threshold(prediction), prediction)
    return regression_metrics(targets, prediction)


def _threshold(probability: np.ndarray) -> np.ndarray:
    return (probability >= 0.5).astype(np.int64)


def _intervals(
    task: Task,
    targets: np.ndarray,
    average: np.ndarray,
    sd: np.ndarray,
    resamples: int,
    seed: int,
    groups: Sequence[str] | None,
) -> dict[str, tuple[float, float]]:
    if resamples == 0:
        return {}
    if task.is_classification:
        fn, arrays = classification_metrics, (targets, _threshold(average), average)
    else:
        fn, arrays = regression_metrics, (targets, average)
    ci = bootstrap_ci(fn, arrays, resamples, seed, groups=groups)
    # Same seed and units, so the same resamples as the headline intervals.
    return ci | bootstrap_ci(_sd_summary, (sd,), resamples, seed, groups=groups)


def _rank_summary(per_rank: np.ndarray) -> dict[str, float]:
    """Min, max, spread and SD of the per-start metric over the starts where it is defined."""
    finite = per_rank[np.isfinite(per_rank)]
    if finite.size == 0:
        return dict.fromkeys(("metric_min", "metric_max", "metric_spread", "metric_sd"), float("nan"))
    return {
        "metric_min": float(finite.min()),
        "metric_max": float(finite.max()),
        "metric_spread": float(finite.max() - finite.min()),
        "metric_sd": float(np.std(finite, ddof=SD_DDOF)) if finite.size > SD_DDOF else float("nan"),
    }


def _sd_summary(sd: np.ndarray) -> dict[str, float]:
    return {"mean_sd": _nan_stat(np.nanmean, sd), "median_sd": _nan_stat(np.nanmedian, sd)}


def _predictions_frame(
    task: Task, video_ids: list[str], targets: np.ndarray, average: np.ndarray, sd: np.ndarray, counts: np.ndarray
) -> pd.DataFrame:
    frame = pd.DataFrame({"video_id": list(video_ids), "target": targets})
    if task.is_classification:
        frame["prediction"] = _threshold(average)
        frame["score"] = average
    else:
        frame["prediction"] = average
    frame["sd"] = sd
    frame["n_clips"] = counts.astype(np.int64)
    return frame


def _check_inputs(
    preds: np.ndarray,
    clip_video: np.ndarray,
    clip_number: np.ndarray,
    targets: np.ndarray,
    video_ids: list[str],
    task: Task,
    ci_resamples: int,
) -> np.ndarray:
    """Validate the arrays; return the number of clips of each video."""
    if preds.ndim != 1 or clip_video.shape != preds.shape or clip_number.shape != preds.shape:
        raise ValueError("clip_predictions, clip_video and clip_number must be 1-D with one entry per clip")
    if len(targets) != len(video_ids):
        raise ValueError("targets must have one entry per video")
    if len(video_ids) == 0 or len(preds) == 0:
        raise UserError("clip_variance: no test videos or clips; the dataset needs a test split")
    if not np.issubdtype(clip_video.dtype, np.integer) or clip_video.min() < 0 or clip_video.max() >= len(video_ids):
        raise ValueError("clip_video must hold row indices into video_ids")
    counts = np.bincount(clip_video, minlength=len(video_ids))
    if (counts == 0).any():
        raise UserError("clip_variance: some test videos have no clips; every video needs at least one clip start")
    pairs = np.stack([clip_video, clip_number], axis=1)
    if len(np.unique(pairs, axis=0)) != len(pairs):
        raise ValueError("clip_variance: a video has two clips with the same clip_number")
    if not np.isfinite(preds).all():
        raise UserError("clip_variance: clip predictions contain NaN or inf; check the model's outputs")
    if task.is_classification and ((preds < 0) | (preds > 1)).any():
        raise UserError(f"clip_variance: task {task.name} needs positive-class probabilities in [0, 1]")
    if task.is_classification:
        if not np.issubdtype(targets.dtype, np.integer) or ((targets < 0) | (targets >= len(task.classes))).any():
            raise UserError(
                f"clip_variance: targets of task {task.name} must be class indices 0..{len(task.classes) - 1}"
            )
    elif not np.isfinite(targets.astype(np.float64)).all():
        raise UserError(f"clip_variance: missing targets for task {task.name}; drop unlabeled videos first")
    if ci_resamples < 0:
        raise UserError(f"clip_variance: ci_resamples must be >= 0 (0 = no intervals), got {ci_resamples}")
    return counts
