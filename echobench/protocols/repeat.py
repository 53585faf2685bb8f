"""Repeating a protocol and summarising the repeats: training seeds, label-fraction subsets, folds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from echobench.protocols.base import ProtocolResult
from echobench.protocols.scoring import intervals_of_mean


def repeat_over_seeds(
    run_once: Callable[[int], ProtocolResult], seeds: Sequence[int], resamples: int = 0
) -> ProtocolResult:
    """Run once per seed; ``metrics`` are the seeds' means and ``per_seed`` their values.

    ``ci`` holds ``resamples``-draw bootstrap intervals of those means: every seed's predictions are scored on
    the same resamples of the test videos (patients), drawn as the first seed's own interval was. Where the
    predictions cannot give every interval the first seed has (segmentation overlaps, clip spreads), there is
    no interval rather than one seed's interval beside the mean. ``val_metrics`` and ``predictions`` are the
    first seed's; ``chosen`` holds the first seed's choices and later seeds' as ``name@seed=S``. With more than
    one seed ``summary`` has one row per seed.
    """
    if not seeds:
        raise ValueError("repeat_over_seeds needs at least one seed")
    results = [run_once(seed) for seed in seeds]
    if len(results) == 1:
        return results[0]
    first = results[0]
    per_seed = {name: [r.metrics[name] for r in results] for name in first.metrics}
    chosen = dict(first.chosen)
    for seed, result in zip(seeds[1:], results[1:], strict=True):
        chosen |= {f"{name}@seed={seed}": value for name, value in result.chosen.items()}
    summary = pd.DataFrame([{"seed": seed, **r.metrics} for seed, r in zip(seeds, results, strict=True)])
    of_mean = (intervals_of_mean([r.predictions for r in results], resamples, seeds[0]) if first.ci else None) or {}
    ci = {name: of_mean[name] for name in first.ci} if set(first.ci) <= set(of_mean) else {}
    return ProtocolResult(
        metrics={name: float(np.mean(values)) for name, values in per_seed.items()},
        ci=ci,
        chosen=chosen | {"seeds": len(seeds)},
        val_metrics=first.val_metrics,
        predictions=first.predictions,
        per_seed=per_seed,
        summary=summary,
        ci_unit=first.ci_unit if ci else None,
        ci_units=first.ci_units if ci else None,
    )


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (``ddof = 1``; NaN for a single value) ignoring NaN entries."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return float("nan"), float("nan")
    sd = float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan")
    return float(finite.mean()), sd
