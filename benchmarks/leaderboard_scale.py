"""Leaderboard build time over many result files: seconds per 1,000 files.

    python benchmarks/leaderboard_scale.py [--files 5000] [--videos 100]

Writes ``--files`` synthetic result files (methods × {knn, linear} × {ef, ef_anomaly} × seeds, each with a
per-video predictions CSV) into a temporary folder, then times the three stages of ``echobench leaderboard
synthecho``: discovering and parsing the files, building the tables (seed aggregation, ranking, paired-bootstrap
ties against each table's leader), and writing Markdown/CSV/HTML with plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echobench.board_output import board_plots, write_outputs
from echobench.leaderboard import build, discover_results, load_board

PROTOCOLS = ("knn", "linear")
TASKS = ("ef", "ef_anomaly")


def write_files(folder: Path, files: int, videos: int) -> int:
    rng = np.random.default_rng(0)
    per_method = len(PROTOCOLS) * len(TASKS)
    seeds = 25
    methods = max(1, files // (per_method * seeds))
    target = rng.uniform(20, 75, videos)
    written = 0
    for m in range(methods):
        for seed in range(seeds):
            for protocol in PROTOCOLS:
                for task in TASKS:
                    if written == files:
                        return written
                    noise = 2 + m * 0.05 + rng.normal(0, 0.2)
                    prediction = target + rng.normal(0, noise, videos)
                    frame = pd.DataFrame({"video_id": [f"V{i}" for i in range(videos)], "target": target})
                    if task == "ef":
                        frame["prediction"] = prediction
                        err = prediction - target
                        ss_tot = ((target - target.mean()) ** 2).sum()
                        metrics = {
                            "mae": float(np.abs(err).mean()),
                            "rmse": float(np.sqrt((err**2).mean())),
                            "r2": float(1 - (err**2).sum() / ss_tot),
                        }
                    else:
                        truth = ((target < 45) | (target > 75)).astype(int)
                        score = 1 / (1 + np.exp((np.abs(prediction - 60) - 15) / 3))
                        frame["target"], frame["prediction"], frame["score"] = truth, (score >= 0.5).astype(int), score
                        metrics = {"balanced_accuracy": 0.6 + 0.001 * m, "auroc": 0.7, "f1": 0.5}
                    path = folder / f"method{m:03d}" / f"seed{seed}" / "synthecho" / f"{protocol}-{task}.json"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    frame.to_csv(path.with_name(f"{protocol}-{task}.predictions.csv"), index=False)
                    record = {
                        "schema": 1,
                        "method": f"method{m:03d}",
                        "protocol": protocol,
                        "task": task,
                        "dataset": "synthecho",
                        "metrics": metrics,
                        "ci95": {k: [v - 0.1, v + 0.1] for k, v in metrics.items()},
                        "per_seed": {},
                        "pretrain_config": {"seed": seed},
                        "environment": {"python": sys.version},
                    }
                    path.write_text(json.dumps(record, indent=2, sort_keys=True))
                    written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--videos", type=int, default=100)
    args = parser.parse_args()
    board = load_board("synthecho")
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "results"
        count = write_files(results, args.files, args.videos)
        started = time.perf_counter()
        found = discover_results(results)
        parsed = time.perf_counter()
        built = build(board, found)
        ranked = time.perf_counter()
        write_outputs(built, Path(folder) / "out", board_plots(built))
        written = time.perf_counter()
    rows = sum(len(t.rows) for t in built.tables)
    total = written - started
    print(f"{count} result files → {len(built.tables)} tables, {rows} rows")
    print(
        f"discover+parse {parsed - started:.2f} s, build+ties {ranked - parsed:.2f} s, "
        f"outputs+plots {written - ranked:.2f} s, total {total:.2f} s"
    )
    per_thousand = 1000 * total / count
    print(f"time per 1,000 files: {per_thousand:.2f} s (discover+build: {1000 * (ranked - started) / count:.2f} s)")


if __name__ == "__main__":
    main()
