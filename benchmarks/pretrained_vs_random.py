"""Pretrained VideoMAE vs the random-init floor on SynthEcho kNN, in one run (same data, clips, protocol).

    python benchmarks/pretrained_vs_random.py [--task ef_anomaly] [--profile quick] [--set pretrain.steps=600 ...]

Prints each method's test metric with its 95 % bootstrap interval and whether the intervals separate.
"""

from __future__ import annotations

import argparse
import time

from rich.table import Table

from echobench.console import console
from echobench.runner import execute, resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="ef_anomaly")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--methods", nargs="+", default=["videomae", "random_init"])
    args = parser.parse_args()

    rows = []
    for method in args.methods:
        started = time.perf_counter()
        outcome = execute(resolve(method, "knn", task=args.task, sets=args.sets, profile=args.profile))
        rows.append((method, outcome, time.perf_counter() - started))

    metric = "balanced_accuracy" if rows[0][1].resolved.task.is_classification else "mae"
    table = Table(title=f"SynthEcho kNN · {args.task} · profile {args.profile}")
    for column in ("method", metric, "95% CI", "k", "AUROC / R²", "seconds"):
        table.add_column(column)
    for method, outcome, seconds in rows:
        result = outcome.result
        low, high = result.ci.get(metric, (float("nan"), float("nan")))
        other = result.metrics.get("auroc", result.metrics.get("r2", float("nan")))
        table.add_row(
            method,
            f"{result.metrics[metric]:.3f}",
            f"[{low:.3f}, {high:.3f}]",
            str(result.chosen.get("k")),
            f"{other:.3f}",
            f"{seconds:.1f}",
        )
    console.print(table)
    (_, first, _), (_, second, _) = rows[0], rows[1]
    lo1, hi1 = first.result.ci[metric]
    lo2, hi2 = second.result.ci[metric]
    separated = lo1 > hi2 or lo2 > hi1
    difference = first.result.metrics[metric] - second.result.metrics[metric]
    print(
        f"{rows[0][0]} - {rows[1][0]} {metric}: {difference:+.3f}; "
        f"95% intervals {'do not ' if separated else ''}overlap"
    )


if __name__ == "__main__":
    main()
