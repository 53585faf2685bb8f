"""Repeating a protocol and summarising the repeats: training seeds, label-fraction subsets, folds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from echobench.protocols.base import ProtocolResult


def repeat_over_seeds(run_once: Callable[[int], ProtocolResult], seeds: Sequence[int]) -> ProtocolResult:
    """Run once per seed; ``metrics`` are the seeds' means and ``per_seed`` their values.

    ``ci``, ``val_metrics`` and ``predictions`` are the first seed's; ``chosen`` holds the first seed's choices
    and later seeds' as ``name@seed=S``. With more than one seed ``summary`` has one row per seed.
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
    return ProtocolResult(
        metrics={name: float(np.mean(values)) for name, values in per_seed.items()},
        ci=first.ci,
        chosen=chosen | {"seeds": len(seeds)},
        val_metrics=first.val_metrics,
        predictions=first.predictions,
        per_seed=per_seed,
        summary=summary,
        ci_unit=first.ci_unit,
        ci_units=first.ci_units,
    )


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (``ddof = 1``; NaN for a single value) ignoring NaN entries."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return float("nan"), float("nan")
    sd = float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan")
    return float(finite.mean()), sd
