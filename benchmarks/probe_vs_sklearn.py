"""Linear probe vs scikit-learn Ridge / LogisticRegression tuned on validation, on planted-signal features
(the data of tests/test_probe_planted.py): test error of each, and the probe's ratio to the reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_probe_planted import SKLEARN_GRID, _planted, _split, _standardiser  # noqa: E402

from echobench.data.tasks import get_task  # noqa: E402
from echobench.protocols.probe import ProbeConfig, run_probe  # noqa: E402


def main() -> None:
    for seed in (0, 1, 2):
        (xtr, ftr), (xva, fva), (xte, fte) = _planted(seed)
        ytr, yva, yte = (50 + 5 * f for f in (ftr, fva, fte))
        s = _standardiser(xtr)
        val = [mean_absolute_error(yva, Ridge(alpha=a).fit(s(xtr), ytr).predict(s(xva))) for a in SKLEARN_GRID]
        ref = mean_absolute_error(yte, Ridge(alpha=SKLEARN_GRID[int(np.argmin(val))]).fit(s(xtr), ytr).predict(s(xte)))
        for solver in ("closed_form", "sgd"):
            cfg = ProbeConfig(ci_resamples=0, solver=solver)
            mae = run_probe(_split(xtr, ytr), _split(xva, yva), _split(xte, yte), get_task("ef"), cfg).metrics["mae"]
            print(f"regression seed {seed} {solver:11s}: probe MAE {mae:.3f}, ridge {ref:.3f}, ratio {mae / ref:.3f}")
        (xtr, ftr), (xva, fva), (xte, fte) = _planted(seed, sizes=(300, 300, 3000))
        ytr, yva, yte = ((f > 0).astype(np.int64) for f in (ftr, fva, fte))
        s = _standardiser(xtr)
        fits = [LogisticRegression(C=c, max_iter=5000).fit(s(xtr), ytr) for c in SKLEARN_GRID]
        best = fits[int(np.argmax([balanced_accuracy_score(yva, f.predict(s(xva))) for f in fits]))]
        ref = 1 - balanced_accuracy_score(yte, best.predict(s(xte)))
        for solver in ("closed_form", "sgd"):
            cfg = ProbeConfig(ci_resamples=0, solver=solver)
            res = run_probe(_split(xtr, ytr), _split(xva, yva), _split(xte, yte), get_task("ef_anomaly"), cfg)
            err = 1 - res.metrics["balanced_accuracy"]
            print(f"logistic seed {seed} {solver:11s}: probe error {err:.4f}, sklearn {ref:.4f}, ratio {err / ref:.3f}")


if __name__ == "__main__":
    main()
