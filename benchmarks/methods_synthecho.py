"""Every registered method on SynthEcho with the same pretraining budget, next to the random-init floor.

    python benchmarks/methods_synthecho.py [--steps 100] [--profile quick] [--methods videomae discover ...]
                                           [--segmentation vjepa vjepa_plain] [--set KEY=VALUE ...] [--out FILE.md]

For each method: one pretraining (the profile's model and clips, ``--steps`` optimiser steps, the same batch and
seed for all), then kNN on ``ef_anomaly`` (test balanced accuracy and AUROC) and the linear probe on ``ef`` (test
R²), each with its 95 % bootstrap interval; methods named by ``--segmentation`` also get the frozen ``lv_seg``
segmentation protocol (Dice). ``random_init`` is the floor. Everything runs in the current ``$ECHOBENCH_HOME`` (set it
to a fresh folder for a cold measurement); the table is printed and, with ``--out``, written as Markdown.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field

from rich.table import Table

from echobench import registry
from echobench.console import console
from echobench.runner import execute, resolve

ROWS = (
    ("knn", "ef_anomaly", "balanced_accuracy"),
    ("knn", "ef_anomaly", "auroc"),
    ("linear", "ef", "r2"),
)


@dataclass
class MethodRow:
    method: str
    values: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def measure(method: str, sets: list[str], profile: str, segmentation: bool) -> MethodRow:
    row = MethodRow(method)
    started = time.perf_counter()
    jobs = [(p, t, m) for p, t, m in ROWS]
    if segmentation:
        jobs.append(("segmentation", "lv_seg", "dice"))
    outcomes: dict[tuple[str, str], object] = {}
    try:
        for protocol, task, metric in jobs:
            if (protocol, task) not in outcomes:
                outcomes[(protocol, task)] = execute(resolve(method, protocol, task=task, sets=sets, profile=profile))
            result = outcomes[(protocol, task)].result  # type: ignore[attr-defined]
            low, high = result.ci.get(metric, (math.nan, math.nan))
            row.values[f"{protocol}:{metric}"] = (result.metrics.get(metric, math.nan), low, high)
    except Exception as exc:  # one broken method must not hide the others' numbers
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    row.seconds = time.perf_counter() - started
    return row


def cell(values: tuple[float, float, float] | None) -> str:
    if values is None:
        return "—"
    value, low, high = values
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="pretraining steps for every method (quick: 100)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--segmentation", nargs="*", default=["vjepa", "vjepa_plain"])
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--out", default=None, help="also write the table as Markdown to this file")
    args = parser.parse_args()

    methods = args.methods or sorted(info.name for info in registry.describe(registry.METHODS_GROUP))
    methods = ["random_init"] + [m for m in methods if m != "random_init"]
    sets = [f"pretrain.steps={args.steps}", *args.sets]
    rows = [measure(m, sets, args.profile, m in args.segmentation) for m in methods]

    columns = ["knn:balanced_accuracy", "knn:auroc", "linear:r2", "segmentation:dice"]
    headers = ["method", "kNN ef_anomaly bal. acc.", "kNN ef_anomaly AUROC", "linear ef R²", "lv_seg Dice", "seconds"]
    table = Table(title=f"SynthEcho · profile {args.profile} · {args.steps} pretraining steps · test [95% CI]")
    for header in headers:
        table.add_column(header)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [cell(row.values.get(c)) for c in columns]
        if row.error:
            cells = [row.error, "", "", ""]
        table.add_row(row.method, *cells, f"{row.seconds:.0f}")
        lines.append("| " + " | ".join([row.method, *cells, f"{row.seconds:.0f}"]) + " |")
    console.print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(f"SynthEcho, profile {args.profile}, {args.steps} pretraining steps; test value [95% CI]\n\n")
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
