"""echobench.stats against scipy and hand computations on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from echobench.metrics import bootstrap_ci, classification_metrics, regression_metrics
from echobench.stats import (
    compare_paired,
    paired_bootstrap_ci,
    paired_mean_bootstrap,
    paired_metric_bootstrap,
    summarise_seeds,
    unit_counts,
    unit_means,
    wilcoxon_p,
)


def test_seed_summary_matches_hand_computation_and_scipy_t_interval():
    s = summarise_seeds([2.0, 2.5, 3.0])
    assert s.mean == pytest.approx(2.5)
    assert s.sd == pytest.approx(0.5)
    low, high = sps.t.interval(0.95, 2, loc=2.5, scale=0.5 / np.sqrt(3))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))
    assert s.n == 3


def test_seed_summary_ignores_undefined_values_and_single_seed_has_no_spread():
    s = summarise_seeds([1.0, float("nan"), None])
    assert (s.mean, s.n) == (1.0, 1)
    assert np.isnan(s.sd) and np.isnan(s.ci_low)


def test_wilcoxon_matches_scipy_and_identical_predictions_give_one():
    d = np.array([1.5, -0.3, 2.2, 0.8, -1.1, 3.0, 0.4, 1.9, -0.2, 0.7])
    assert wilcoxon_p(d) == pytest.approx(sps.wilcoxon(d).pvalue)
    with_zero = np.array([0.0, 1.0, 2.0, -0.5, 3.0, 1.2, 0.9])
    assert wilcoxon_p(with_zero) == pytest.approx(sps.wilcoxon(with_zero, zero_method="wilcox").pvalue)
    assert wilcoxon_p(np.zeros(8)) == 1.0


def test_paired_bootstrap_agrees_with_scipy_paired_percentile_bootstrap():
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 1.0, 300)
    b = a - 0.2 + rng.normal(0, 0.5, 300)
    low, high = paired_bootstrap_ci(a - b, n_resamples=20000, seed=1)
    ref = sps.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=20000,
        random_state=np.random.default_rng(2),
    ).confidence_interval
    # Different random draws: the intervals agree to within Monte-Carlo error (~1 % of the SE of the mean).
    se = np.std(a - b, ddof=1) / np.sqrt(300)
    assert low == pytest.approx(ref.low, abs=0.05 * se)
    assert high == pytest.approx(ref.high, abs=0.05 * se)


def test_paired_bootstrap_of_constant_difference_is_that_constant():
    assert paired_bootstrap_ci(np.full(20, 0.75)) == pytest.approx((0.75, 0.75))


def test_paired_metric_bootstrap_equals_mean_difference_bootstrap_for_mae():
    """MAE(A) − MAE(B) on a resample is the mean of per-video |errA| − |errB|: same draws, same interval."""
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 70, 50)
    pa, pb = y + rng.normal(0, 3, 50), y + rng.normal(0, 5, 50)
    diff, low, high = paired_metric_bootstrap(regression_metrics, "mae", (y, pa), (y, pb), n_resamples=500, seed=4)
    per_video = np.abs(pa - y) - np.abs(pb - y)
    assert diff == pytest.approx(per_video.mean())
    assert (low, high) == pytest.approx(paired_bootstrap_ci(per_video, n_resamples=500, seed=4))


def test_paired_metric_bootstrap_of_auroc_matches_a_loop_over_scikit_learn():
    rng = np.random.default_rng(1)
    y = (np.arange(40) % 2).astype(int)
    sa, sb = np.clip(0.6 * y + 0.4 * rng.uniform(size=40), 0, 1), rng.uniform(size=40)
    arrays_a, arrays_b = (y, (sa > 0.5).astype(int), sa), (y, (sb > 0.5).astype(int), sb)
    _, low, high = paired_metric_bootstrap(classification_metrics, "auroc", arrays_a, arrays_b, n_resamples=200, seed=5)
    idx = np.random.default_rng(5).integers(0, 40, size=(200, 40))
    diffs = []
    for take in idx:
        diffs.append(
            classification_metrics(*(x[take] for x in arrays_a))["auroc"]
            - classification_metrics(*(x[take] for x in arrays_b))["auroc"]
        )
    diffs = np.asarray(diffs)
    diffs = diffs[np.isfinite(diffs)]
    assert (low, high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_paired_mean_bootstrap_of_r2_over_seeds_matches_a_loop_over_scikit_learn():
    """Three runs of A against two of B (e.g. pretraining seeds): on every patient resample each run's R² is
    recomputed with scikit-learn, A's and B's runs are averaged, and the interval is that of the difference."""
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(6)
    groups = [f"p{i % 9}" for i in range(24)]
    y = rng.normal(55, 10, 24)
    runs_a = [(y, y + rng.normal(0, 4, 24)) for _ in range(3)]
    runs_b = [(y, y + rng.normal(0, 7, 24)) for _ in range(2)]
    diff, low, high = paired_mean_bootstrap(regression_metrics, "r2", runs_a, runs_b, groups, n_resamples=300, seed=2)
    assert diff == pytest.approx(
        np.mean([r2_score(*run) for run in runs_a]) - np.mean([r2_score(*run) for run in runs_b])
    )
    patients = np.random.default_rng(2).integers(0, 9, size=(300, 9))
    diffs = []
    for drawn in patients:
        take = np.concatenate([np.flatnonzero(np.asarray(groups) == f"p{unit}") for unit in drawn])
        mean_a = np.mean([r2_score(t[take], p[take]) for t, p in runs_a])
        mean_b = np.mean([r2_score(t[take], p[take]) for t, p in runs_b])
        diffs.append(mean_a - mean_b)
    assert (low, high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    single = paired_mean_bootstrap(regression_metrics, "r2", runs_a[:1], runs_b[:1], groups, n_resamples=300, seed=2)
    assert single == paired_metric_bootstrap(regression_metrics, "r2", runs_a[0], runs_b[0], groups, 300, seed=2)


def test_patients_are_resampled_as_units():
    groups = ["p1", "p1", "p2", "p3", "p3", "p3"]
    assert unit_means(np.array([1.0, 3.0, 5.0, 0.0, 3.0, 6.0]), groups) == pytest.approx([2.0, 5.0, 3.0])
    counts = unit_counts(np.array([[0, 0, 2]]), groups, 6)
    assert counts.tolist() == [[2.0, 2.0, 0.0, 1.0, 1.0, 1.0]]
    result = compare_paired(np.array([3.0, 5.0, 7.0, 1.0, 4.0, 9.0]), np.array([2.0, 2.0, 2.0, 1.0, 1.0, 3.0]), groups)
    assert (result.unit, result.n_units) == ("patient", 3)
    assert result.mean_diff == pytest.approx(np.mean([2.0, 5.0, 3.0]))


def test_paired_bootstrap_draws_the_patients_of_each_methods_own_interval():
    """B is perfect (MAE 0 on every resample), so MAE(A) − MAE(B) on shared resamples is MAE(A) on the resamples
    bootstrap_ci draws for A's own interval: equal bounds mean the same patients were drawn."""
    rng = np.random.default_rng(3)
    groups = [f"p{i % 7}" for i in rng.permutation(30)]
    y = rng.normal(55, 10, 30)
    pa = y + rng.normal(0, 5, 30)
    _, low, high = paired_metric_bootstrap(
        regression_metrics, "mae", (y, pa), (y, y.copy()), groups=groups, n_resamples=400, seed=9
    )
    own = bootstrap_ci(regression_metrics, (y, pa), n_resamples=400, seed=9, groups=groups)["mae"]
    assert (low, high) == pytest.approx(own, abs=1e-12)
