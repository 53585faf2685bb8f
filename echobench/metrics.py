"""Classification, regression and segmentation metrics, and bootstrap confidence intervals over videos or patients.

Every point estimate comes from scikit-learn. :func:`bootstrap_ci` needs the same metrics on ~1,000 resamples;
for :func:`classification_metrics` and :func:`regression_metrics` it evaluates all resamples at once from
per-video resample counts (a resample is a multiset of videos, so every metric is a count-weighted sum over
the original videos), which is exact and orders of magnitude faster than calling scikit-learn 1,000 times.
Any other metric function is evaluated resample by resample.

The resampling unit is the patient when patient ids (``groups``) are given: videos of one patient are
correlated (same heart, same scanner session), so drawing videos independently understates the uncertainty.
A drawn patient brings all of its videos (:func:`unit_counts`).

Segmentation overlaps are computed per image (:func:`image_overlaps`) and summarised over images
(:func:`segmentation_metrics`); a video's images are one bootstrap unit, so its ED and ES frames are resampled
together.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

MetricFn = Callable[..., dict[str, float]]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Binary metrics with positive class 1; ``score`` is the positive-class score (for AUROC).

    Per class: ``f1``, ``precision``, ``recall`` (= sensitivity) are those of class 1; ``f1_negative``,
    ``precision_negative`` and ``specificity`` (= recall of class 0) those of class 0. Macro: ``f1_macro``,
    ``precision_macro`` and ``recall_macro`` average the per-class values over the labels present in ``y_true``
    or ``y_pred``; ``balanced_accuracy`` averages the recalls of the labels present in ``y_true``, so it equals
    ``recall_macro`` whenever ``y_true`` holds both classes (and differs when it holds one class and ``y_pred``
    both: the predicted-only class enters ``recall_macro`` with recall 0).

    These are scikit-learn's rules with ``zero_division=0``: a ratio whose denominator is 0 (no true or no
    predicted member of a class) counts as 0 — so a class absent from both ``y_true`` and ``y_pred`` has F1,
    precision and recall 0 when asked for by name (``pos_label``), and is left out of the macro averages. AUROC
    is NaN when ``y_true`` holds a single class.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    single_class = np.unique(y_true).size < 2
    with _quiet_degenerate_cases():
        return {
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
            "f1": float(skm.f1_score(y_true, y_pred, pos_label=1, zero_division=0)),
            "precision": float(skm.precision_score(y_true, y_pred, pos_label=1, zero_division=0)),
            "recall": float(skm.recall_score(y_true, y_pred, pos_label=1, zero_division=0)),
            "f1_negative": float(skm.f1_score(y_true, y_pred, pos_label=0, zero_division=0)),
            "precision_negative": float(skm.precision_score(y_true, y_pred, pos_label=0, zero_division=0)),
            "specificity": float(skm.recall_score(y_true, y_pred, pos_label=0, zero_division=0)),
            "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "precision_macro": float(skm.precision_score(y_true, y_pred, average="macro", zero_division=0)),
            "recall_macro": float(skm.recall_score(y_true, y_pred, average="macro", zero_division=0)),
            "auroc": float("nan") if single_class else float(skm.roc_auc_score(y_true, score)),
        }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (scikit-learn: R² of a constant target follows ``force_finite``; NaN for one video)."""
    with _quiet_degenerate_cases():
        return {
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred)),
        }


#: The per-image overlap measures of :func:`image_overlaps`, in the order of its axis 1.
OVERLAP_MEASURES = ("dice", "iou", "ppv", "recall")
#: Image phases of :func:`segmentation_metrics`, in the order of its axis 1.
PHASES = ("ed", "es")


def image_overlaps(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice, IoU (Jaccard), PPV (precision) and recall of every foreground class of every image.

    ``truth`` and ``pred`` are ``(N, H, W)`` label maps (0 = background, ``1 .. num_classes - 1`` = foreground
    classes). Returns ``(N, 4, num_classes - 1)`` float64 in :data:`OVERLAP_MEASURES` order, from the pixel counts
    ``tp``, ``fp``, ``fn`` of each class: Dice ``2tp / (2tp + fp + fn)``, IoU ``tp / (tp + fp + fn)``, PPV
    ``tp / (tp + fp)``, recall ``tp / (tp + fn)``.

    Empty masks: a ratio whose denominator is 0 is 1 when the class is absent from both truth and prediction
    (nothing to find and nothing claimed: perfect agreement) and 0 otherwise — so predicting nothing for a
    present class gives PPV 0 (not an undefined perfect precision), and predicting a class that is absent gives
    recall 0.
    """
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape or truth.ndim != 3:
        raise ValueError(f"truth and pred must be (N, H, W) label maps of one shape, got {truth.shape}, {pred.shape}")
    if num_classes < 2:
        raise ValueError(f"segmentation needs a background and at least one foreground class, got {num_classes}")
    classes = np.arange(1, num_classes).reshape(1, -1, 1)
    flat_truth = truth.reshape(len(truth), 1, -1) == classes
    flat_pred = pred.reshape(len(pred), 1, -1) == classes
    tp = (flat_truth & flat_pred).sum(axis=2).astype(np.float64)
    fp = (~flat_truth & flat_pred).sum(axis=2).astype(np.float64)
    fn = (flat_truth & ~flat_pred).sum(axis=2).astype(np.float64)
    both_empty = (tp + fp + fn) == 0

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), both_empty.astype(np.float64))

    measures = [ratio(2 * tp, 2 * tp + fp + fn), ratio(tp, tp + fp + fn), ratio(tp, tp + fp), ratio(tp, tp + fn)]
    return np.stack(measures, axis=1)


def segmentation_metrics(overlaps: np.ndarray, class_names: Sequence[str] = ("lv",)) -> dict[str, float]:
    """Summary of per-image overlaps ``(V, 2, 4, C)``: the ED (index 0) and ES (index 1) image of ``V`` videos.

    For each measure of :data:`OVERLAP_MEASURES`, an image's value is its mean over the ``C`` foreground classes;
    ``<measure>`` is the mean and ``<measure>_sd`` the sample SD (``ddof = 1``; NaN for one image) over all
    images. ``dice_ed`` and ``dice_es`` average Dice over one phase's images. With more than one class,
    ``<measure>_<class>`` is the class's mean over images.
    """
    overlaps = np.asarray(overlaps, dtype=np.float64)
    if overlaps.ndim != 4 or overlaps.shape[1:3] != (len(PHASES), len(OVERLAP_MEASURES)):
        raise ValueError(f"overlaps must be (videos, 2, 4, classes), got {overlaps.shape}")
    if overlaps.shape[3] != len(class_names):
        raise ValueError(f"overlaps hold {overlaps.shape[3]} classes but {len(class_names)} class names were given")
    images = overlaps.reshape(-1, len(OVERLAP_MEASURES), len(class_names))
    per_image = images.mean(axis=2)
    out: dict[str, float] = {}
    for m, measure in enumerate(OVERLAP_MEASURES):
        out[measure] = float(per_image[:, m].mean())
        out[f"{measure}_sd"] = float(per_image[:, m].std(ddof=1)) if len(per_image) > 1 else float("nan")
    for p, phase in enumerate(PHASES):
        out[f"dice_{phase}"] = float(overlaps[:, p, 0].mean())  # (V, C): equal counts, so mean of means
    if len(class_names) > 1:
        for m, measure in enumerate(OVERLAP_MEASURES):
            for c, name in enumerate(class_names):
                out[f"{measure}_{name}"] = float(images[:, m, c].mean())
    return out


@contextlib.contextmanager
def _quiet_degenerate_cases() -> Iterator[None]:
    """Silence scikit-learn's warnings for one-class or one-video inputs: the docstrings define those values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        yield


def bootstrap_ci(
    metric_fn: MetricFn,
    arrays: tuple[np.ndarray, ...],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric ``metric_fn(*arrays)`` returns.

    ``arrays`` hold one entry per video. Each resample draws units with replacement (the same draw for every
    array) from ``np.random.default_rng(seed)``: videos, or — when ``groups`` gives each video's patient id —
    patients, numbered in first-seen order, each bringing all of its videos. A metric that is NaN in a resample
    is left out of that resample; a metric NaN in every resample gets ``(nan, nan)``.
    """
    return bootstrap_ci_of_mean(metric_fn, [arrays], n_resamples, seed, level, groups)


def bootstrap_ci_of_mean(
    metric_fn: MetricFn,
    runs: Sequence[tuple[np.ndarray, ...]],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the mean over ``runs`` of ``metric_fn(*run)`` (e.g. a protocol repeated
    with several training seeds on the same test videos).

    Every run holds one entry per video of the same videos, and every run is scored on the same resample, so the
    interval is that of the reported mean, not of any one run. Resampling as :func:`bootstrap_ci`; a resample
    where some run's metric is NaN is left out for that metric.
    """
    runs = [tuple(np.asarray(a) for a in arrays) for arrays in runs]
    if not runs:
        raise ValueError("bootstrap_ci_of_mean needs at least one run")
    n = len(runs[0][0])
    if any(len(a) != n for arrays in runs for a in arrays):
        raise ValueError("bootstrap_ci: all arrays must have one entry per video")
    if n == 0 or n_resamples < 1:
        raise ValueError("bootstrap_ci needs at least one video and one resample")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    unit = unit_of_video(groups, n)
    indices = draw_units(int(unit.max()) + 1, n_resamples, seed)
    per_run = [_resampled_metrics(metric_fn, arrays, indices, unit, groups) for arrays in runs]
    values = {name: np.mean([run[name] for run in per_run], axis=0) for name in per_run[0]}
    tail = 100.0 * (1.0 - level) / 2.0
    return {name: _percentile_interval(v, tail) for name, v in values.items()}


def _resampled_metrics(
    metric_fn: MetricFn,
    arrays: tuple[np.ndarray, ...],
    indices: np.ndarray,
    unit: np.ndarray,
    groups: Sequence[str] | None,
) -> dict[str, np.ndarray]:
    """``{metric: (R,)}`` of ``metric_fn`` on each resample that ``indices`` ``(R, U)`` draws."""
    batched = _BATCHED.get(metric_fn)
    if batched is not None:
        return batched(unit_counts(indices, groups, len(arrays[0])), *arrays)
    takes: Any = indices
    if groups is not None:
        members = [np.flatnonzero(unit == u) for u in range(indices.shape[1])]
        takes = (np.concatenate([members[u] for u in idx]) for idx in indices)
    rows = [metric_fn(*(a[take] for a in arrays)) for take in takes]
    return {name: np.array([row[name] for row in rows], dtype=np.float64) for name in rows[0]}


def metric_arrays(frame: Any, kind: str, metric: str) -> tuple[Any, tuple[np.ndarray, ...]] | None:
    """The metric function and its per-video input arrays for a predictions frame, or None if it cannot be
    recomputed from the frame."""
    if kind == "regression" and {"target", "prediction"} <= set(frame.columns):
        return regression_metrics, (frame["target"].to_numpy(float), frame["prediction"].to_numpy(float))
    if kind == "classification" and {"target", "prediction", "score"} <= set(frame.columns):
        arrays = (frame["target"].to_numpy(int), frame["prediction"].to_numpy(int), frame["score"].to_numpy(float))
        return classification_metrics, arrays
    if metric in frame.columns:
        return _column_mean(metric), (frame[metric].to_numpy(float),)
    return None


def _column_mean(metric: str) -> Any:
    def mean_of(values: np.ndarray) -> dict[str, float]:
        return {metric: float(np.mean(values))}

    return mean_of


def unit_of_video(groups: Sequence[str] | None, n: int) -> np.ndarray:
    """``(n,)`` int: each video's resampling unit — itself, or its patient numbered in first-seen order."""
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups must give one patient id per video: {len(groups)} ids for {n} videos")
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse.reshape(-1)]


def draw_units(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(R, U)`` unit indices drawn with replacement; the one draw every bootstrap here (single and paired) uses."""
    return np.random.default_rng(seed).integers(0, n_units, size=(n_resamples, n_units))


def unit_counts(indices: np.ndarray, groups: Sequence[str] | None, n: int) -> np.ndarray:
    """``(R, n)`` float64: how often each video appears in each resample when ``indices`` ``(R, U)`` draws units
    (videos, or patients in first-seen order of ``groups``); a drawn patient brings all of its videos."""
    r, u = indices.shape
    flat = (indices + u * np.arange(r)[:, None]).ravel()
    per_unit = np.bincount(flat, minlength=r * u).reshape(r, u).astype(np.float64)
    return per_unit[:, unit_of_video(groups, n)]


def resampling_unit(groups: Sequence[str] | None, n: int) -> dict[str, Any]:
    """What :func:`bootstrap_ci` resamples for ``n`` videos: ``{"ci_unit": "patient" | "video", "ci_units": U}``."""
    return {"ci_unit": "video" if groups is None else "patient", "ci_units": int(unit_of_video(groups, n).max()) + 1}


def _percentile_interval(values: np.ndarray, tail: float) -> tuple[float, float]:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _classification_batched(
    counts: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray
) -> dict[str, np.ndarray]:
    """:func:`classification_metrics` of every resample, from per-video counts ``(R, n)``."""
    t1 = (y_true == 1).astype(np.float64)
    p1 = (y_pred == 1).astype(np.float64)
    tp = counts @ (t1 * p1)
    fn = counts @ (t1 * (1 - p1))
    fp = counts @ ((1 - t1) * p1)
    tn = counts @ ((1 - t1) * (1 - p1))
    pos, neg, total = tp + fn, tn + fp, tp + fn + fp + tn
    recall = _safe_div(tp, pos)
    specificity = _safe_div(tn, neg)
    precision = _safe_div(tp, tp + fp)
    precision_neg = _safe_div(tn, tn + fn)
    f1_pos = _safe_div(2 * tp, 2 * tp + fp + fn)
    f1_neg = _safe_div(2 * tn, 2 * tn + fn + fp)
    # A class enters the macro averages when it appears in y_true or y_pred of that resample (scikit-learn).
    has_pos = ((pos + fp) > 0).astype(np.float64)
    has_neg = ((neg + fn) > 0).astype(np.float64)
    present = has_pos + has_neg

    def macro(of_pos: np.ndarray, of_neg: np.ndarray) -> np.ndarray:
        return (of_pos * has_pos + of_neg * has_neg) / present

    # Balanced accuracy averages the recalls of the classes present in y_true.
    in_true_pos, in_true_neg = (pos > 0).astype(np.float64), (neg > 0).astype(np.float64)
    balanced = (recall * in_true_pos + specificity * in_true_neg) / (in_true_pos + in_true_neg)
    return {
        "accuracy": (tp + tn) / total,
        "balanced_accuracy": balanced,
        "f1": f1_pos,
        "precision": precision,
        "recall": recall,
        "f1_negative": f1_neg,
        "precision_negative": precision_neg,
        "specificity": specificity,
        "f1_macro": macro(f1_pos, f1_neg),
        "precision_macro": macro(precision, precision_neg),
        "recall_macro": macro(recall, specificity),
        "auroc": _auroc_batched(counts, t1.astype(bool), np.asarray(score, dtype=np.float64), pos, neg),
    }


def _auroc_batched(
    counts: np.ndarray, positive: np.ndarray, score: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray
) -> np.ndarray:
    """Mann–Whitney AUROC per resample (ties count ½), equal to scikit-learn's trapezoidal ROC area.

    Videos are sorted by score once; a positive video wins against every negative of lower score and half
    of the negatives of equal score, all read off one cumulative sum of negative counts per resample.
    """
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    counts = counts[:, order]
    positive = positive[order]
    neg_cum = np.zeros((counts.shape[0], len(score) + 1))
    np.cumsum(counts * ~positive, axis=1, out=neg_cum[:, 1:])
    tie_start = np.searchsorted(sorted_score, sorted_score, side="left")
    tie_end = np.searchsorted(sorted_score, sorted_score, side="right")
    neg_below = neg_cum[:, tie_start]
    neg_tied = neg_cum[:, tie_end] - neg_below
    wins = np.sum(counts * positive * (neg_below + 0.5 * neg_tied), axis=1)
    den = n_pos * n_neg
    return np.divide(wins, den, out=np.full_like(wins, np.nan), where=den > 0)


def _regression_batched(counts: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`regression_metrics` of every resample, from per-video counts ``(R, n)``."""
    y = np.asarray(y_true, dtype=np.float64)
    err = np.asarray(y_pred, dtype=np.float64) - y
    n = counts.sum(axis=1)
    ss_res = counts @ err**2
    # Centre on the full-sample mean first so the resample variance does not suffer float cancellation.
    centred = y - y.mean()
    sq = counts @ centred**2
    ss_tot = sq - (counts @ centred) ** 2 / n
    # A constant-target resample has ss_tot exactly 0 in scikit-learn; clip the float residue to that.
    ss_tot = np.where(ss_tot <= 1e-12 * np.maximum(sq, 1.0), 0.0, ss_tot)
    safe_tot = np.where(ss_tot > 0, ss_tot, 1.0)
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / safe_tot, np.where(ss_res > 0, 0.0, 1.0))
    if len(y) < 2:
        r2 = np.full_like(r2, np.nan)
    return {"mae": (counts @ np.abs(err)) / n, "rmse": np.sqrt(ss_res / n), "r2": r2}


_BATCHED: dict[MetricFn, Callable[..., dict[str, np.ndarray]]] = {
    classification_metrics: _classification_batched,
    regression_metrics: _regression_batched,
}
