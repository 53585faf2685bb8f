"""Metrics equal scikit-learn; bootstrap intervals are percentile intervals over videos or over patients."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as skm

from echobench.metrics import (
    _classification_batched,
    bootstrap_ci,
    bootstrap_ci_of_mean,
    classification_metrics,
    draw_units,
    regression_metrics,
    resampling_unit,
    unit_counts,
)


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


def _sklearn_reference(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The per-class and macro metrics straight from scikit-learn (zero_division=0, labels from y_true ∪ y_pred)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "f1": skm.f1_score(y, pred, pos_label=1, zero_division=0),
            "precision": skm.precision_score(y, pred, pos_label=1, zero_division=0),
            "recall": skm.recall_score(y, pred, pos_label=1, zero_division=0),
            "f1_negative": skm.f1_score(y, pred, pos_label=0, zero_division=0),
            "precision_negative": skm.precision_score(y, pred, pos_label=0, zero_division=0),
            "specificity": skm.recall_score(y, pred, pos_label=0, zero_division=0),
            "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
            "precision_macro": skm.precision_score(y, pred, average="macro", zero_division=0),
            "recall_macro": skm.recall_score(y, pred, average="macro", zero_division=0),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        }


def test_per_class_and_macro_metrics_equal_sklearn() -> None:
    y, pred, score = _binary_data(300, seed=11)
    m = classification_metrics(y, pred, score)
    for name, value in _sklearn_reference(y, pred).items():
        assert m[name] == pytest.approx(value, abs=1e-15), name
    # Class 0 by hand: tn / (tn + fp) is specificity, tn / (tn + fn) the negative precision.
    tn, fp, fn = np.sum((y == 0) & (pred == 0)), np.sum((y == 0) & (pred == 1)), np.sum((y == 1) & (pred == 0))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["precision_negative"] == pytest.approx(tn / (tn + fn))
    assert m["f1_negative"] == pytest.approx(2 * tn / (2 * tn + fp + fn))


# (y_true, y_pred, hand-computed values): one class in y_true, no positive predictions, no negative predictions,
# one class everywhere. A class absent from both arrays scores 0 by name and is left out of the macro averages.
DEGENERATE = [
    (
        [0, 0, 1],
        [0, 0, 0],
        {
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "specificity": 1.0,
            "precision_negative": 2 / 3,
            "f1_negative": 0.8,
            "f1_macro": 0.4,
            "precision_macro": 1 / 3,
            "recall_macro": 0.5,
        },
    ),
    (
        [1, 1, 1, 1, 1],
        [1, 0, 1, 1, 0],
        {
            "recall": 0.6,
            "precision": 1.0,
            "specificity": 0.0,
            "precision_negative": 0.0,
            "f1_negative": 0.0,
            "recall_macro": 0.3,
            "balanced_accuracy": 0.6,
            "precision_macro": 0.5,
            "f1_macro": 0.375,
        },
    ),
    (
        [0, 1, 1, 0],
        [1, 1, 1, 1],
        {
            "precision": 0.5,
            "recall": 1.0,
            "specificity": 0.0,
            "precision_negative": 0.0,
            "f1_negative": 0.0,
            "recall_macro": 0.5,
            "precision_macro": 0.25,
        },
    ),
    (
        [1, 1],
        [1, 1],
        {
            "f1": 1.0,
            "f1_negative": 0.0,
            "specificity": 0.0,
            "precision_negative": 0.0,
            "f1_macro": 1.0,
            "precision_macro": 1.0,
            "recall_macro": 1.0,
        },
    ),
    (
        [0, 0, 0],
        [0, 0, 0],
        {"f1": 0.0, "precision": 0.0, "recall": 0.0, "f1_negative": 1.0, "specificity": 1.0, "f1_macro": 1.0},
    ),
]


@pytest.mark.parametrize(("y_true", "y_pred", "expected"), DEGENERATE)
def test_degenerate_cases_follow_sklearn_and_hand_computed_values(y_true, y_pred, expected) -> None:
    y, pred = np.array(y_true), np.array(y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, pred, np.linspace(0, 1, len(y)))
    for name, value in expected.items():
        assert m[name] == pytest.approx(value), name
    for name, value in _sklearn_reference(y, pred).items():
        assert m[name] == pytest.approx(value, abs=1e-15), name


def test_macro_recall_is_balanced_accuracy_when_both_classes_are_true() -> None:
    for seed in range(20):
        y, pred, score = _binary_data(int(np.random.default_rng(seed).integers(2, 40)), seed=seed)
        if np.unique(y).size < 2:
            continue
        m = classification_metrics(y, pred, score)
        assert m["recall_macro"] == pytest.approx(m["balanced_accuracy"], abs=1e-15)
        assert m["recall_macro"] == pytest.approx((m["recall"] + m["specificity"]) / 2, abs=1e-15)
    # One true class, both predicted: the predicted-only class enters the macro recall with recall 0.
    m = classification_metrics(np.ones(4, dtype=int), np.array([1, 1, 1, 0]), np.linspace(0, 1, 4))
    assert (m["recall_macro"], m["balanced_accuracy"]) == pytest.approx((0.375, 0.75))


@pytest.mark.parametrize("groups", [None, ["a", "b", "a", "c", "b"]])
def test_batched_classification_equals_a_loop_of_the_point_estimate(groups) -> None:
    # Five videos: many of the 400 resamples hold one class, no positive or no negative prediction.
    y = np.array([1, 0, 0, 1, 0])
    pred = np.array([1, 1, 0, 0, 0])
    score = np.array([0.9, 0.6, 0.2, 0.4, 0.2])
    unit = np.array([0, 1, 0, 2, 1]) if groups else np.arange(5)
    indices = draw_units(int(unit.max()) + 1, 400, seed=5)
    batched = _classification_batched(unit_counts(indices, groups, 5), y, pred, score)
    for r, draw in enumerate(indices):
        take = np.concatenate([np.flatnonzero(unit == u) for u in draw])
        point = classification_metrics(y[take], pred[take], score[take])
        assert point.keys() == batched.keys()
        for name, value in point.items():
            np.testing.assert_allclose(batched[name][r], value, rtol=0, atol=1e-12, equal_nan=True, err_msg=name)


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


def test_interval_of_a_mean_over_runs_scores_every_run_on_the_same_patient_resample() -> None:
    # Three runs' AUROC on 6 videos of 3 patients; each resample draws patients, and a drawn patient brings both
    # of its videos. The interval is the percentile of the per-resample mean of the three runs' AUROC.
    y = np.array([0, 1, 0, 1, 1, 0])
    patients = ["p", "p", "q", "q", "r", "r"]
    scores = [np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]), np.array([0.6, 0.4, 0.2, 0.8, 0.5, 0.55]), np.full(6, 0.5)]
    runs = [(y, (s > 0.5).astype(int), s) for s in scores]
    ci = bootstrap_ci_of_mean(classification_metrics, runs, n_resamples=30, seed=2, groups=patients)
    draws = np.random.default_rng(2).integers(0, 3, size=(30, 3))
    members = {0: [0, 1], 1: [2, 3], 2: [4, 5]}
    means = []
    for draw in draws:
        take = np.concatenate([members[u] for u in draw])
        if len(set(y[take])) < 2:
            continue
        means.append(np.mean([skm.roc_auc_score(y[take], s[take]) for s in scores]))
    assert ci["auroc"] == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12)
    alone = bootstrap_ci(classification_metrics, runs[0], n_resamples=30, seed=2, groups=patients)
    assert bootstrap_ci_of_mean(classification_metrics, runs[:1], 30, 2, groups=patients) == alone
    with pytest.raises(ValueError, match="one entry per video"):
        bootstrap_ci_of_mean(regression_metrics, [(y, y), (y[:5], y[:5])])


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


# Eight patients, interleaved and with 1-3 videos each, so that units are neither contiguous nor sorted.
PATIENTS = ["c", "a", "c", "b", "d", "a", "e", "f", "c", "g", "h", "e", "g", "b"]
Y_PATIENTS = np.array([1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1])
SCORE_PATIENTS = np.array([0.9, 0.2, 0.7, 0.4, 0.3, 0.1, 0.6, 0.8, 0.5, 0.55, 0.35, 0.2, 0.45, 0.65])


def _brute_force_patient_interval(
    y: np.ndarray, pred: np.ndarray, score: np.ndarray, patients: list[str], resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Independent loop: patients numbered in first-seen order; each resample draws that many patients with
    replacement (one ``integers`` call per resample on one generator) and scores all their videos with
    scikit-learn; NaN resamples are dropped; numpy's percentiles."""
    order = list(dict.fromkeys(patients))
    videos = {p: [i for i, q in enumerate(patients) if q == p] for p in order}
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"auroc": [], "balanced_accuracy": [], "accuracy": []}
    for _ in range(resamples):
        drawn = rng.integers(0, len(order), size=len(order))
        take = [i for u in drawn for i in videos[order[u]]]
        yt, pt, st = y[take], pred[take], score[take]
        values["accuracy"].append(float(np.mean(yt == pt)))
        values["balanced_accuracy"].append(float(np.mean([np.mean(pt[yt == c] == c) for c in np.unique(yt)])))
        values["auroc"].append(skm.roc_auc_score(yt, st) if len(np.unique(yt)) == 2 else float("nan"))
    out = {}
    for name, v in values.items():
        finite = np.asarray(v)[np.isfinite(v)]
        out[name] = tuple(float(x) for x in np.percentile(finite, [2.5, 97.5]))
    return out


def test_patient_bootstrap_equals_a_brute_force_loop_over_patients() -> None:
    pred = (SCORE_PATIENTS > 0.5).astype(np.int64)
    arrays = (Y_PATIENTS, pred, SCORE_PATIENTS)
    expected = _brute_force_patient_interval(Y_PATIENTS, pred, SCORE_PATIENTS, PATIENTS, resamples=300, seed=11)
    batched = bootstrap_ci(classification_metrics, arrays, n_resamples=300, seed=11, groups=PATIENTS)
    per_resample = bootstrap_ci(lambda *a: classification_metrics(*a), arrays, 300, seed=11, groups=PATIENTS)
    for name, bounds in expected.items():
        assert batched[name] == pytest.approx(bounds, abs=1e-12), name
        assert per_resample[name] == pytest.approx(bounds, abs=1e-12), name
    # Resampling patients is not resampling videos: the same seed gives other intervals.
    assert bootstrap_ci(classification_metrics, arrays, n_resamples=300, seed=11) != batched


def test_one_video_per_patient_is_the_video_bootstrap() -> None:
    y, pred, score = _binary_data(30, seed=8)
    patients = [f"p{i}" for i in range(30)]
    assert bootstrap_ci(classification_metrics, (y, pred, score), 200, seed=2, groups=patients) == bootstrap_ci(
        classification_metrics, (y, pred, score), 200, seed=2
    )


def test_correlated_videos_within_patients_widen_the_interval() -> None:
    """20 patients x 5 videos; a patient's videos share its error (same heart, same miscalibration), so they
    carry about one patient's worth of information, not five videos' worth."""
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(20)], 5)
    target = np.repeat(rng.normal(55.0, 10.0, 20), 5) + rng.normal(0.0, 1.0, 100)
    prediction = target + np.repeat(rng.normal(0.0, 6.0, 20), 5) + rng.normal(0.0, 0.5, 100)
    video = bootstrap_ci(regression_metrics, (target, prediction), n_resamples=1000, seed=1)
    patient = bootstrap_ci(regression_metrics, (target, prediction), n_resamples=1000, seed=1, groups=patients)
    for name in ("mae", "rmse", "r2"):
        width_video, width_patient = video[name][1] - video[name][0], patient[name][1] - patient[name][0]
        # Five perfectly correlated videos per patient: about sqrt(5) = 2.2 times wider.
        assert width_patient > 1.6 * width_video, name
    assert resampling_unit(list(patients), 100) == {"ci_unit": "patient", "ci_units": 20}
    assert resampling_unit(None, 100) == {"ci_unit": "video", "ci_units": 100}


def test_patient_ids_must_align_with_videos() -> None:
    with pytest.raises(ValueError, match="one patient id per video"):
        bootstrap_ci(regression_metrics, (np.zeros(3), np.zeros(3)), groups=["a", "b"])
