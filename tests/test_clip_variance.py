"""Clip-start variance: per-video SD, per-start metric spread and the headline of the all-clip average."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from echobench.data.tasks import get_task
from echobench.errors import UserError
from echobench.metrics import bootstrap_ci, classification_metrics, regression_metrics
from echobench.protocols.clip_variance import clip_variance

# Regression example: 3 videos x 3 starts (rows = videos, columns = start ranks) plus a one-clip video.
EF_TARGETS = np.array([50.0, 60.0, 40.0, 70.0])
EF_PREDS = [[48.0, 52.0, 50.0], [60.0, 63.0, 57.0], [40.0, 46.0, 43.0], [66.0]]


def _clips(per_video: list[list[float]], order_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened ``(predictions, clip_video, clip_number)`` in a shuffled clip order (order must not matter)."""
    preds = np.array([p for row in per_video for p in row])
    video = np.array([v for v, row in enumerate(per_video) for _ in row])
    number = np.array([r for row in per_video for r in range(len(row))])
    perm = np.random.default_rng(order_seed).permutation(len(preds))
    return preds[perm], video[perm], number[perm]


def _run(per_video, targets, task_name: str, resamples: int = 0, seed: int = 0):
    preds, video, number = _clips(per_video)
    ids = [f"v{i}" for i in range(len(targets))]
    return clip_variance(preds, video, number, targets, ids, get_task(task_name), resamples, seed)


def test_regression_sd_spread_and_headline_by_hand():
    result = _run(EF_PREDS, EF_TARGETS, "ef")
    frame = result.predictions.set_index("video_id")
    # Sample SD (ddof = 1) across starts; NaN for the one-clip video.
    expected_sd = [np.std(row, ddof=1) for row in EF_PREDS[:3]]
    np.testing.assert_allclose(frame["sd"].to_numpy()[:3], expected_sd)
    np.testing.assert_allclose(expected_sd, [2.0, 3.0, 3.0])
    assert np.isnan(frame.loc["v3", "sd"])
    assert frame["n_clips"].tolist() == [3, 3, 3, 1]
    assert result.metrics["mean_sd"] == pytest.approx(8.0 / 3.0)
    assert result.metrics["median_sd"] == pytest.approx(3.0)
    # Per-start MAE: start 0 |err| = 2, 0, 0, 4; start 1: 2, 3, 6; start 2: 0, 3, 3.
    per_start = [6.0 / 4.0, 11.0 / 3.0, 2.0]
    for r, mae in enumerate(per_start):
        assert result.metrics[f"mae@start={r}"] == pytest.approx(mae)
    assert result.metrics["metric_min"] == pytest.approx(1.5)
    assert result.metrics["metric_max"] == pytest.approx(11.0 / 3.0)
    assert result.metrics["metric_spread"] == pytest.approx(11.0 / 3.0 - 1.5)
    assert result.metrics["metric_sd"] == pytest.approx(np.std(per_start, ddof=1))
    # Headline: the all-clip averages 50, 60, 43, 66.
    average = np.array([50.0, 60.0, 43.0, 66.0])
    np.testing.assert_allclose(frame["prediction"].to_numpy(), average)
    assert result.metrics["mae"] == pytest.approx(7.0 / 4.0)
    for name, value in regression_metrics(EF_TARGETS, average).items():
        assert result.metrics[name] == pytest.approx(value)
    assert result.chosen == {"spread_metric": "mae", "num_starts": 3, "sd_ddof": 1}


def test_classification_uses_auroc_for_the_spread_and_thresholds_the_average():
    targets = np.array([0, 0, 1, 1])
    per_video = [[0.1, 0.2], [0.4, 0.3], [0.35, 0.6], [0.8, 0.7]]
    result = _run(per_video, targets, "ef_binary")
    # Start 0: positive 0.35 beats 0.1 only, 0.8 beats both -> 3/4; start 1 separates perfectly -> 1.
    assert result.metrics["auroc@start=0"] == pytest.approx(0.75)
    assert result.metrics["auroc@start=1"] == pytest.approx(1.0)
    assert result.metrics["metric_spread"] == pytest.approx(0.25)
    assert result.chosen["spread_metric"] == "auroc"
    average = np.array([0.15, 0.35, 0.475, 0.75])
    expected = classification_metrics(targets, (average >= 0.5).astype(int), average)
    assert expected["recall"] == 0.5 and expected["auroc"] == 1.0
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value)
    assert result.predictions["prediction"].tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(result.predictions["score"], average)
    np.testing.assert_allclose(result.predictions["sd"], [np.std(row, ddof=1) for row in per_video])


def test_per_start_auroc_matches_scikit_learn_on_random_data():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 40)
    scores = rng.random((40, 5))
    result = _run(scores.tolist(), targets, "mi")
    per_start = [roc_auc_score(targets, scores[:, r]) for r in range(5)]
    for r, value in enumerate(per_start):
        assert result.metrics[f"auroc@start={r}"] == pytest.approx(value)
    assert result.metrics["metric_spread"] == pytest.approx(max(per_start) - min(per_start))
    assert result.metrics["auroc"] == pytest.approx(roc_auc_score(targets, scores.mean(axis=1)))


def test_intervals_are_the_bootstrap_of_the_headline_and_of_the_sd():
    result = _run(EF_PREDS, EF_TARGETS, "ef", resamples=200, seed=3)
    average = np.array([50.0, 60.0, 43.0, 66.0])
    expected = bootstrap_ci(regression_metrics, (EF_TARGETS, average), n_resamples=200, seed=3)
    for name, interval in expected.items():
        np.testing.assert_allclose(result.ci[name], interval)
    lo, hi = result.ci["mean_sd"]
    assert 2.0 <= lo <= hi <= 3.0
    assert _run(EF_PREDS, EF_TARGETS, "ef", resamples=0).ci == {}


def test_prediction_frame_columns():
    frame = _run(EF_PREDS, EF_TARGETS, "ef").predictions
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["video_id", "target", "prediction", "sd", "n_clips"]


def test_bad_inputs_are_user_errors():
    task = get_task("ef_binary")
    with pytest.raises(UserError, match="probabilities"):
        clip_variance(
            np.array([0.2, 1.3]), np.array([0, 1]), np.array([0, 0]), np.array([0, 1]), ["a", "b"], task, 0, 0
        )
    with pytest.raises(UserError, match="no clips"):
        clip_variance(
            np.array([0.2, 0.3]), np.array([0, 0]), np.array([0, 1]), np.array([0, 1]), ["a", "b"], task, 0, 0
        )
