"""Statistics for leaderboards and paired comparisons: seed summaries, paired bootstrap, Wilcoxon signed-rank.

All functions are pure (inputs in, numbers out) so they can be checked against scipy on hand-made data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from echobench.metrics import _BATCHED, MetricFn, draw_units, unit_counts, unit_of_video


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample SD (``ddof = 1``) and Student-t 95 % interval of the mean over ``n`` seeds (finite values)."""

    mean: float
    sd: float
    n: int
    ci_low: float
    ci_high: float


def summarise_seeds(values: Sequence[float], level: float = 0.95) -> SeedSummary:
    """Mean ± SD over seeds and the t interval ``mean ± t_{(1+level)/2, n-1} · sd / sqrt(n)``.

    Non-finite values (undefined metrics) are left out. With one value the SD and interval are NaN.
    """
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    n = int(finite.size)
    if n == 0:
        return SeedSummary(float("nan"), float("nan"), 0, float("nan"), float("nan"))
    mean = float(finite.mean())
    if n == 1:
        return SeedSummary(mean, float("nan"), 1, float("nan"), float("nan"))
    sd = float(finite.std(ddof=1))
    half = float(sps.t.ppf((1.0 + level) / 2.0, n - 1)) * sd / np.sqrt(n)
    return SeedSummary(mean, sd, n, mean - half, mean + half)


@dataclass(frozen=True)
class PairedComparison:
    """``mean_diff`` = mean over units of (A − B); ``ci`` its paired percentile bootstrap interval;
    ``p_wilcoxon`` the two-sided Wilcoxon signed-rank p-value of the per-unit differences."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_wilcoxon: float
    n_units: int
    unit: str

    @property
    def covers_zero(self) -> bool:
        return bool(self.ci_low <= 0.0 <= self.ci_high)


def unit_means(differences: np.ndarray, groups: Sequence[str] | None) -> np.ndarray:
    """Per-unit differences: the videos themselves, or each group's (patient's) mean difference in first-seen
    order, so that all videos of one patient are resampled together."""
    differences = np.asarray(differences, dtype=np.float64)
    if groups is None:
        return differences
    unit = unit_of_video(groups, len(differences))
    return np.bincount(unit, weights=differences) / np.bincount(unit)


def paired_bootstrap_ci(
    differences: np.ndarray, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences (one entry per resampling unit).

    Each resample draws ``n`` units with replacement from ``np.random.default_rng(seed)``; the interval is the
    ``(1 − level)/2`` and ``(1 + level)/2`` percentiles (numpy's linear interpolation) of the resample means.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("paired_bootstrap_ci needs a non-empty 1-D array of differences")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    indices = draw_units(d.size, n_resamples, seed)
    means = d[indices].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (scipy, zero differences dropped: ``zero_method='wilcox'``).

    All-zero differences (identical predictions) give p = 1: nothing distinguishes the two methods.
    """
    d = np.asarray(differences, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    return float(sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def compare_paired(
    a: np.ndarray,
    b: np.ndarray,
    groups: Sequence[str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedComparison:
    """Paired comparison of per-video values ``a`` and ``b`` (e.g. absolute errors, or correctness).

    The resampling unit is the patient when ``groups`` (patient ids) are given, else the video; the Wilcoxon
    test runs on the same units.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("a and b must be 1-D with one value per video, in the same order")
    units = unit_means(a - b, groups)
    low, high = paired_bootstrap_ci(units, n_resamples=n_resamples, seed=seed, level=level)
    return PairedComparison(
        mean_diff=float(units.mean()),
        ci_low=low,
        ci_high=high,
        p_wilcoxon=wilcoxon_p(units),
        n_units=int(units.size),
        unit="patient" if groups is not None else "video",
    )


def paired_metric_bootstrap(
    metric_fn: MetricFn,
    metric: str,
    arrays_a: tuple[np.ndarray, ...],
    arrays_b: tuple[np.ndarray, ...],
    groups: Sequence[str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``metric(A) − metric(B)`` on all videos and its paired percentile bootstrap interval.

    Both methods are scored on the same resample of units (videos, or patients when ``groups`` is given), so
    the interval reflects the difference on shared cases, not two independent uncertainties. Metrics with a
    batched form in :mod:`echobench.metrics` are evaluated from resample counts (exact); others per resample.
    Resamples where the metric is undefined (NaN) are left out. The one-run case of :func:`paired_mean_bootstrap`.
    """
    return paired_mean_bootstrap(metric_fn, metric, [arrays_a], [arrays_b], groups, n_resamples, seed, level)


def paired_mean_bootstrap(
    metric_fn: MetricFn,
    metric: str,
    runs_a: Sequence[tuple[np.ndarray, ...]],
    runs_b: Sequence[tuple[np.ndarray, ...]],
    groups: Sequence[str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``mean(metric(A_i)) − mean(metric(B_j))`` over runs of two methods (e.g. pretraining seeds) on the same
    videos, and its paired percentile bootstrap interval: every run of both methods is scored on the same resample
    of units, so the interval is that of the difference of the two reported means.
    """
    if not runs_a or not runs_b:
        raise ValueError("paired_mean_bootstrap needs at least one run of each method")
    n = len(runs_a[0][0])
    if any(len(x) != n for run in (*runs_a, *runs_b) for x in run):
        raise ValueError("paired_mean_bootstrap: every array needs one entry per video, in the same order")

    def mean_over(runs: Sequence[tuple[np.ndarray, ...]], counts: np.ndarray) -> np.ndarray:
        return np.mean([_resampled(metric_fn, metric, counts, run) for run in runs], axis=0)

    everything = np.ones((1, n))
    point = float(mean_over(runs_a, everything)[0] - mean_over(runs_b, everything)[0])
    # The draw of metrics.bootstrap_ci: with the same seed, the same resamples as each method's own interval.
    counts = unit_counts(draw_units(int(unit_of_video(groups, n).max()) + 1, n_resamples, seed), groups, n)
    diffs = mean_over(runs_a, counts) - mean_over(runs_b, counts)
    finite = diffs[np.isfinite(diffs)]
    if finite.size == 0:
        return point, float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return point, float(low), float(high)


def _resampled(metric_fn: MetricFn, metric: str, counts: np.ndarray, arrays: tuple[np.ndarray, ...]) -> np.ndarray:
    batched: Callable[..., dict[str, np.ndarray]] | None = _BATCHED.get(metric_fn)
    if batched is not None:
        return np.asarray(batched(counts, *arrays)[metric], dtype=np.float64)
    index = np.arange(counts.shape[1])
    out = []
    for row in counts.astype(np.int64):
        take = np.repeat(index, row)
        out.append(metric_fn(*(np.asarray(x)[take] for x in arrays))[metric])
    return np.asarray(out, dtype=np.float64)
