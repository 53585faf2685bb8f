"""Metrics equal scikit-learn; bootstrap intervals are per-video percentile intervals."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as skm

from echobench.metrics import bootstrap_ci, classification_metrics, regression_metrics


def _binary_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predictions and rounded scores (rounding creates score ties) with some signal."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)
    return y, (score > 0.5).astype(np.int64), score


def test_classification_metrics_equal_sklearn() -> None:
    y, pred, score = _binary_data(300, seed=1)
    m = classification_metrics(y, pred, score)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, score))


def test_auroc_is_nan_for_a_single_class_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(np.ones(5, dtype=int), np.array([1, 0, 1, 1, 0]), np.linspace(0, 1, 5))
    assert np.isnan(m["auroc"])
    assert m["recall"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx(0.6)


def test_zero_division_gives_zero() -> None:
    m = classification_metrics(np.array([0, 0, 1]), np.zeros(3, dtype=int), np.array([0.1, 0.2, 0.3]))
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["recall"] == 0.0


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(55, 10, 200)
    pred = y + rng.normal(0, 5, 200)
    m = regression_metrics(y, pred)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))


def _one_resample_each(
    fn: Callable[..., dict[str, float]], arrays: tuple[np.ndarray, ...], seeds: range
) -> list[dict[str, tuple[float, float]]]:
    """With one resample, the interval collapses to that resample's metric value: (v, v)."""
    return [bootstrap_ci(fn, arrays, n_resamples=1, seed=s) for s in seeds]


def _assert_same(fast: list[dict], slow: list[dict]) -> None:
    for f, s in zip(fast, slow, strict=True):
        assert f.keys() == s.keys()
        for name in f:
            np.testing.assert_allclose(f[name], s[name], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)


def test_vectorised_classification_resamples_equal_sklearn() -> None:
    # Tiny n: many resamples are single-class, have no predicted positives, or tie every score.
    y, pred, score = _binary_data(7, seed=3)
    seeds = range(60)
    fast = _one_resample_each(classification_metrics, (y, pred, score), seeds)
    slow = _one_resample_each(lambda *a: classification_metrics(*a), (y, pred, score), seeds)
    _assert_same(fast, slow)
    assert any(np.isnan(r["auroc"][0]) for r in fast)


def test_vectorised_regression_resamples_equal_sklearn() -> None:
    # Mostly-constant targets: some resamples have zero target variance (scikit-learn's R² rule applies).
    y = np.array([50.0, 50.0, 50.0, 50.0, 62.5])
    pred = np.array([50.0, 50.0, 49.0, 51.0, 60.0])
    seeds = range(60)
    fast = _one_resample_each(regression_metrics, (y, pred), seeds)
    slow = _one_resample_each(lambda *a: regression_metrics(*a), (y, pred), seeds)
    _assert_same(fast, slow)
    assert {r["r2"][0] for r in fast} & {0.0, 1.0}
    one_video = (np.array([50.0]), np.array([52.0]))
    _assert_same(
        _one_resample_each(regression_metrics, one_video, range(2)),
        _one_resample_each(lambda *a: regression_metrics(*a), one_video, range(2)),
    )


def test_bootstrap_intervals_match_the_per_resample_path() -> None:
    y, pred, score = _binary_data(50, seed=4)
    fast = bootstrap_ci(classification_metrics, (y, pred, score), n_resamples=40, seed=7)
    slow = bootstrap_ci(lambda *a: classification_metrics(*a), (y, pred, score), n_resamples=40, seed=7)
    _assert_same([fast], [slow])


def test_interval_contains_point_and_shrinks_with_four_times_the_videos() -> None:
    widths = {}
    for n in (200, 800):
        y, pred, score = _binary_data(n, seed=5)
        point = classification_metrics(y, pred, score)
        ci = bootstrap_ci(classification_metrics, (y, pred, score), n_resamples=500, seed=0)
        for name in ("accuracy", "balanced_accuracy", "f1", "auroc"):
            lo, hi = ci[name]
            assert lo <= point[name] <= hi
        widths[n] = {name: ci[name][1] - ci[name][0] for name in ci}
    for name, wide in widths[200].items():
        # Width scales as 1/sqrt(n): about half with 4x the videos.
        assert widths[800][name] < 0.75 * wide, name


def test_bootstrap_is_seeded() -> None:
    y, pred, score = _binary_data(40, seed=6)
    a = bootstrap_ci(classification_metrics, (y, pred, score), n_resamples=100, seed=3)
    b = bootstrap_ci(classification_metrics, (y, pred, score), n_resamples=100, seed=3)
    c = bootstrap_ci(classification_metrics, (y, pred, score), n_resamples=100, seed=4)
    assert a == b
    assert a != c


def test_bootstrap_rejects_misaligned_arrays() -> None:
    with pytest.raises(ValueError, match="one entry per video"):
        bootstrap_ci(regression_metrics, (np.zeros(3), np.zeros(4)))
