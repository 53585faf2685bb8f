"""Leaderboard plots (matplotlib, Agg) as PNG bytes: byte-identical for identical inputs.

ROC curves and reliability curves for binary tasks, predicted-vs-true and Bland–Altman for regression, error
by EF range, label-fraction curves with error bars, and clip-start variance box plots. Each function takes
per-method data already read from result files and returns PNG bytes (or None when there is nothing to draw).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

#: EF ranges of the error-by-range plot (percent): reduced, mid-range, normal.
EF_RANGES: tuple[tuple[str, float, float], ...] = (
    ("< 40", -np.inf, 40.0),
    ("40–54", 40.0, 55.0),
    ("≥ 55", 55.0, np.inf),
)
DPI = 80
#: Rendering settings fixed so that output does not depend on a user's matplotlibrc.
STYLE = {"figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7}


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    # No Software/creation metadata: the bytes depend only on what is drawn.
    fig.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return buffer.getvalue()


def _figure(ncols: int = 1) -> tuple[plt.Figure, np.ndarray]:
    """Call inside the style contexts of the plotting function."""
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.4), squeeze=False)
    return fig, axes[0]


def roc_curves(frames: Mapping[str, pd.DataFrame], title: str) -> bytes | None:
    """ROC curve per method from ``target`` and ``score`` (positive-class probability)."""
    usable = {m: f for m, f in frames.items() if {"target", "score"} <= set(f.columns) and f["target"].nunique() == 2}
    if not usable:
        return None
    with plt.style.context("default"), matplotlib.rc_context(STYLE):
        fig, (ax,) = _figure()
        for method, frame in usable.items():
            fpr, tpr, _ = roc_curve(frame["target"].to_numpy(int), frame["score"].to_numpy(float))
            ax.plot(fpr, tpr, label=method)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC · {title}")
        ax.legend(loc="lower right")
        return _png(fig)


def reliability_curves(frames: Mapping[str, pd.DataFrame], title: str, bins: int = 10) -> bytes | None:
    """Reliability (calibration) curve per method: observed positive rate against mean predicted score per bin."""
    usable = {m: f for m, f in frames.items() if {"target", "score"} <= set(f.columns) and f["target"].nunique() == 2}
    if not usable:
        return None
    with plt.style.context("default"), matplotlib.rc_context(STYLE):
        fig, (ax,) = _figure()
        for method, frame in usable.items():
            observed, predicted = calibration_curve(
                frame["target"].to_numpy(int), frame["score"].to_numpy(float), n_bins=bins, strategy="uniform"
            )
            ax.plot(predicted, observed, marker="o", markersize=3, label=method)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title=f"Reliability · {title}")
        ax.legend(loc="upper left")
        return _png(fig)


def regression_agreement(frames: Mapping[str, pd.DataFrame], title: str, unit: str = "EF %") -> bytes | None:
    """Predicted vs true (left) and Bland–Altman (right: difference against mean, bias and ±1.96 SD limits)."""
    usable = {m: f for m, f in frames.items() if {"target", "prediction"} <= set(f.columns)}
    if not usable:
        return None
    with plt.style.context("default"), matplotlib.rc_context(STYLE):
        fig, (scatter, bland) = _figure(2)
        low = min(float(min(f["target"].min(), f["prediction"].min())) for f in usable.values())
        high = max(float(max(f["target"].max(), f["prediction"].max())) for f in usable.values())
        for index, (method, frame) in enumerate(usable.items()):
            color = f"C{index % 10}"
            truth, pred = frame["target"].to_numpy(float), frame["prediction"].to_numpy(float)
            scatter.scatter(truth, pred, s=8, alpha=0.7, color=color, label=method)
            mean, diff = (truth + pred) / 2.0, pred - truth
            bias, spread = float(diff.mean()), 1.96 * float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
            bland.scatter(mean, diff, s=8, alpha=0.7, color=color, label=f"{method}: bias {bias:+.2f}")
            for level in (bias - spread, bias, bias + spread):
                bland.axhline(level, color=color, linewidth=0.8, linestyle="-" if level == bias else "--")
        scatter.plot([low, high], [low, high], color="grey", linestyle=":", linewidth=0.8)
        scatter.set(xlabel=f"true ({unit})", ylabel=f"predicted ({unit})", title=f"Predicted vs true · {title}")
        bland.set(xlabel=f"mean of true and predicted ({unit})", ylabel="predicted − true", title="Bland–Altman")
        scatter.legend(loc="upper left")
        bland.legend(loc="upper right")
        return _png(fig)


def error_by_range(frames: Mapping[str, pd.DataFrame], title: str) -> bytes | None:
    """Mean absolute error per true-EF range (< 40, 40–54, ≥ 55 %), one bar group per range."""
    usable = {m: f for m, f in frames.items() if {"target", "prediction"} <= set(f.columns)}
    if not usable:
        return None
    with plt.style.context("default"), matplotlib.rc_context(STYLE):
        fig, (ax,) = _figure()
        width = 0.8 / len(usable)
        for index, (method, frame) in enumerate(usable.items()):
            errors = mae_by_range(frame)
            positions = np.arange(len(EF_RANGES)) + (index - (len(usable) - 1) / 2) * width
            ax.bar(positions, [errors[name][0] for name, _, _ in EF_RANGES], width=width, label=method)
        counts = mae_by_range(next(iter(usable.values())))
        ax.set_xticks(np.arange(len(EF_RANGES)), [f"EF {name} %\n(n={counts[name][1]})" for name, _, _ in EF_RANGES])
        ax.set(ylabel="MAE (EF points)", title=f"Error by EF range · {title}")
        ax.legend(loc="upper right")
        return _png(fig)


def mae_by_range(frame: pd.DataFrame) -> dict[str, tuple[float, int]]:
    """``{range: (MAE, n videos)}`` over :data:`EF_RANGES` of the true EF; NaN MAE for an empty range."""
    truth = frame["target"].to_numpy(float)
    error = np.abs(frame["prediction"].to_numpy(float) - truth)
    out = {}
    for name, low, high in EF_RANGES:
        inside = (truth >= low) & (truth < high)
        out[name] = (float(error[inside].mean()) if inside.any() else float("nan"), int(inside.sum()))
    return out


def label_fraction_curves(
    curves: Mapping[str, Sequence[tuple[float, float, float]]], metric: str, title: str
) -> bytes | None:
    """Metric against label fraction per method: ``(fraction, mean, sd)`` points with ±SD error bars."""
    usable = {m: sorted(points) for m, points in curves.items() if points}
    if not usable:
        return None
    with plt.style.context("default"), matplotlib.rc_context(STYLE):
        fig, (ax,) = _figure()
        for method, points in usable.items():
            fraction, mean, sd = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            ax.errorbar(fraction, mean, yerr=np.nan_to_num(sd), marker="o", markersize=3, capsize=3, label=method)
        ax.set_xscale("log")
        fractions = sorted({p[0] for points in usable.values() for p in points})
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set(xlabel="fraction of training labels", ylabel=f"{metric} (mean ± SD over subsets)")
        ax.set_title(f"Label fraction · {title}")
        ax.legend(loc="best")
        return _png(fig)


def clip_variance_boxes(spreads: Mapping[str, np.ndarray], title: str) -> bytes | None:
    """Box plot per method of the per-video SD of predictions across clip starts."""
    usable = {m: np.asarray(v, dtype=float)[np.isfinite(v)] for m, v in spreads.items()}
    usable = {m: v for m, v in usable.items() if v.size}
    if not usable:
        return None
    with plt.style.context("default"), matplotlib.rc_context(STYLE):
        fig, (ax,) = _figure()
        ax.boxplot(list(usable.values()), tick_labels=list(usable.keys()))
        ax.set(ylabel="per-video SD across clip starts", title=f"Clip-start variance · {title}")
        return _png(fig)
