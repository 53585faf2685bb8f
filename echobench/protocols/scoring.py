"""Scoring shared by the protocols: per-clip outputs to per-video predictions, metrics, intervals, tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from echobench.data.tasks import Task
from echobench.metrics import (
    bootstrap_ci,
    bootstrap_ci_of_mean,
    classification_metrics,
    metric_arrays,
    regression_metrics,
    resampling_unit,
)
from echobench.protocols.base import FeatureSet

Aggregate = Literal["mean", "any"]
AGGREGATES: tuple[str, ...] = ("mean", "any")


def video_outputs(
    out: torch.Tensor,
    clip_video: np.ndarray,
    n_videos: int,
    task: Task,
    aggregate: Aggregate,
    target_mean: float = 0.0,
    target_std: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-video ``(prediction, score)`` of every head from per-clip outputs ``(H, n_clips, out)``.

    Regression outputs are de-standardised (``out * target_std + target_mean``) and averaged over a video's clips.
    Classification outputs are logits: ``mean`` averages class probabilities over clips (prediction = argmax,
    score = positive-class probability); ``any`` (binary) calls a video positive when any clip's argmax is
    positive and scores it by its largest clip probability. Score is ``None`` for regression.
    """
    out = out.detach().cpu()
    index = torch.from_numpy(np.asarray(clip_video, dtype=np.int64))
    n_heads = out.shape[0]
    if not task.is_classification:
        values = out[..., 0].double() * target_std + target_mean
        return _video_mean(values, index, n_videos).numpy(), None
    probs = out.double().softmax(dim=-1)
    if aggregate == "mean":
        video_probs = _video_mean(probs, index, n_videos)
        return video_probs.argmax(dim=-1).numpy(), video_probs[..., 1].numpy()
    positive = (probs.argmax(dim=-1) == 1).double()
    empty = torch.full((n_heads, n_videos), -torch.inf, dtype=torch.float64)
    any_positive = empty.scatter_reduce(1, index.expand(n_heads, -1), positive, reduce="amax")
    score = empty.scatter_reduce(1, index.expand(n_heads, -1), probs[..., 1], reduce="amax")
    return any_positive.long().numpy(), score.numpy()


def _video_mean(values: torch.Tensor, index: torch.Tensor, n_videos: int) -> torch.Tensor:
    sums = torch.zeros((values.shape[0], n_videos, *values.shape[2:]), dtype=values.dtype).index_add_(1, index, values)
    counts = torch.bincount(index, minlength=n_videos).to(values.dtype)
    return sums / counts.view(1, -1, *[1] * (values.dim() - 2))


def primary_metric(task: Task, targets: np.ndarray, pred: np.ndarray, score: np.ndarray | None) -> np.ndarray:
    """``task.primary_metric`` of every head (rows of ``pred``/``score``), as :mod:`echobench.metrics` defines it.

    Accuracy, balanced accuracy, MAE and RMSE are computed for all heads at once (the grid is scored every
    epoch); any other metric calls the metric function head by head. A head with non-finite output scores NaN.
    """
    y = np.asarray(targets)
    name = task.primary_metric
    if name == "accuracy":
        return (pred == y).mean(axis=1)
    if name == "balanced_accuracy":
        recalls = [(pred[:, y == c] == c).mean(axis=1) for c in np.unique(y)]
        return np.mean(recalls, axis=0)
    if name in ("mae", "rmse"):
        err = pred - y.astype(np.float64)
        return np.abs(err).mean(axis=1) if name == "mae" else np.sqrt(np.square(err).mean(axis=1))
    values = np.full(len(pred), np.nan)
    for h in range(len(pred)):
        row_score = None if score is None else score[h]
        if np.isfinite(pred[h]).all() and (row_score is None or np.isfinite(row_score).all()):
            values[h] = task_metrics(task, y, pred[h], row_score)[name]
    return values


def first_best(scores: np.ndarray, higher_is_better: bool) -> int:
    """Index of the best score; the first among ties; NaN is worst."""
    signed = scores if higher_is_better else -scores
    return int(np.argmax(np.nan_to_num(signed, nan=-np.inf)))


def task_metrics(task: Task, targets: np.ndarray, pred: np.ndarray, score: np.ndarray | None) -> dict[str, float]:
    if score is None:
        return regression_metrics(targets, pred)
    return classification_metrics(targets, pred, score)


def intervals(
    targets: np.ndarray,
    pred: np.ndarray,
    score: np.ndarray | None,
    resamples: int,
    seed: int,
    groups: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of the test metrics, over patients when ``groups`` gives each video's patient id."""
    if resamples == 0:
        return {}
    if score is None:
        return bootstrap_ci(regression_metrics, (targets, pred), n_resamples=resamples, seed=seed, groups=groups)
    return bootstrap_ci(classification_metrics, (targets, pred, score), n_resamples=resamples, seed=seed, groups=groups)


def intervals_of_mean(
    frames: Sequence[pd.DataFrame], resamples: int, seed: int
) -> dict[str, tuple[float, float]] | None:
    """Bootstrap intervals of the mean test metrics of repeats whose :func:`predictions_frame` tables are
    ``frames`` (one per repeat, the same test videos), resampled as the repeats' own intervals (over patients when
    the tables carry ``patient_id``). None when the tables are not scalar per-video predictions of the same videos
    (e.g. segmentation overlaps), which this cannot average.
    """
    first = frames[0]
    if resamples == 0 or not {"target", "prediction"} <= set(first.columns):
        return None
    if any(list(f["video_id"]) != list(first["video_id"]) for f in frames[1:]):
        return None
    if not all(pd.api.types.is_numeric_dtype(f["prediction"]) for f in frames):
        return None
    groups = list(first["patient_id"]) if "patient_id" in first.columns else None
    kind = "classification" if "score" in first.columns else "regression"
    inputs = [metric_arrays(f, kind, "") for f in frames]
    if any(got is None for got in inputs):
        return None
    metric_fn = inputs[0][0]
    return bootstrap_ci_of_mean(metric_fn, [got[1] for got in inputs], resamples, seed, groups=groups)


def interval_unit(ci: Mapping[str, tuple[float, float]], groups: Sequence[str] | None, n_videos: int) -> dict[str, Any]:
    """The :class:`ProtocolResult` fields ``ci_unit``/``ci_units`` for intervals ``ci`` (none without intervals)."""
    return resampling_unit(groups, n_videos) if ci else {}


def predictions_frame(test: FeatureSet, pred: np.ndarray, score: np.ndarray | None) -> pd.DataFrame:
    """One row per test video: ``video_id``, ``target``, ``prediction``, (classification) ``score`` and, when
    known, ``patient_id`` (so that paired comparisons resample the same patients)."""
    frame = pd.DataFrame({"video_id": list(test.video_ids), "target": test.targets, "prediction": pred})
    if score is not None:
        frame["score"] = score
    if test.groups is not None:
        frame["patient_id"] = list(test.groups)
    return frame
