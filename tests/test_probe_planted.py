"""The linear probe against scikit-learn on features with a planted linear signal: its test error is within 2 % of
``Ridge`` / ``LogisticRegression`` whose penalty is chosen on the same validation split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error

from echobench.data.tasks import get_task
from echobench.protocols.base import FeatureSet
from echobench.protocols.probe import ProbeConfig, run_probe

DIM, INFORMATIVE = 128, 8
SKLEARN_GRID = np.logspace(-4, 4, 17)


def _split(x: np.ndarray, targets: np.ndarray) -> FeatureSet:
    ids = [f"v{i}" for i in range(len(x))]
    return FeatureSet(features=x.astype(np.float32), clip_video=np.arange(len(x)), video_ids=ids, targets=targets)


def _planted(seed: int, sizes: tuple[int, ...] = (150, 200, 2000)) -> list[tuple[np.ndarray, np.ndarray]]:
    """Features of unequal scales, a signal in 8 of 128 directions: few training samples, so the penalty matters."""
    rng = np.random.default_rng(seed)
    weights = np.zeros(DIM)
    weights[:INFORMATIVE] = rng.normal(size=INFORMATIVE)
    scales = rng.uniform(0.5, 3.0, size=DIM)
    out = []
    for n in sizes:
        x = rng.normal(size=(n, DIM)) * scales
        out.append((x, x @ (weights / scales) + rng.normal(scale=1.0, size=n)))
    return out


def _standardiser(x_train: np.ndarray):
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return lambda x: (x - mean) / std


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_probe_matches_validation_tuned_ridge(seed: int) -> None:
    (xtr, ftr), (xva, fva), (xte, fte) = _planted(seed)
    ytr, yva, yte = (50 + 5 * f for f in (ftr, fva, fte))
    result = run_probe(
        _split(xtr, ytr), _split(xva, yva), _split(xte, yte), get_task("ef"), ProbeConfig(ci_resamples=0)
    )
    s = _standardiser(xtr)
    val_mae = [mean_absolute_error(yva, Ridge(alpha=a).fit(s(xtr), ytr).predict(s(xva))) for a in SKLEARN_GRID]
    alpha = SKLEARN_GRID[int(np.argmin(val_mae))]
    reference = mean_absolute_error(yte, Ridge(alpha=alpha).fit(s(xtr), ytr).predict(s(xte)))
    assert result.chosen["solver"] == "closed_form"
    assert result.metrics["mae"] <= 1.02 * reference


@pytest.mark.parametrize("seed", [0])
def test_linear_probe_matches_validation_tuned_logistic_regression(seed: int) -> None:
    (xtr, ftr), (xva, fva), (xte, fte) = _planted(seed, sizes=(300, 300, 3000))
    ytr, yva, yte = ((f > 0).astype(np.int64) for f in (ftr, fva, fte))
    task = get_task("ef_anomaly")
    result = run_probe(_split(xtr, ytr), _split(xva, yva), _split(xte, yte), task, ProbeConfig(ci_resamples=0))
    s = _standardiser(xtr)

    def fitted(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=5000).fit(s(xtr), ytr)

    val_bacc = [balanced_accuracy_score(yva, fitted(c).predict(s(xva))) for c in SKLEARN_GRID]
    c = SKLEARN_GRID[int(np.argmax(val_bacc))]
    reference_error = 1 - balanced_accuracy_score(yte, fitted(c).predict(s(xte)))
    assert 1 - result.metrics["balanced_accuracy"] <= 1.02 * reference_error


def test_sgd_solver_stays_available_for_linear_heads() -> None:
    (xtr, ftr), (xva, fva), (xte, fte) = _planted(0, sizes=(60, 40, 40))
    config = ProbeConfig(ci_resamples=0, solver="sgd", epochs=3)
    result = run_probe(_split(xtr, ftr), _split(xva, fva), _split(xte, fte), get_task("ef"), config)
    assert set(result.chosen) == {"lr", "weight_decay", "epoch"}
