"""Regenerate the committed example board: run every built-in method on kNN and linear (plus a label sweep and
clip-start variance) with tiny settings on SynthEcho, copy the result files into ``leaderboards/results`` with
portable paths, and rebuild ``leaderboards/synthecho.{md,csv,html}``.

    python scripts/refresh_example_board.py [--home DIR] [--methods videomae random_init]

``--home`` is the ``ECHOBENCH_HOME`` the runs use (default: a fresh temporary folder, so the user's cache and
results are never touched). Takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "leaderboards" / "results"
#: Small enough that every run takes seconds to a minute on a CPU; the board shows the pipeline, not SSL quality.
TINY = [
    "method.frames=8",
    "method.stride=2",
    "method.size=32",
    "method.patch=8",
    "method.tubelet=2",
    "pretrain.steps=30",
    "pretrain.batch_size=4",
    "pretrain.seed=0",
]
RUNS: list[tuple[str, str, list[str], list[str]]] = [
    # (protocol, task, protocol overrides, extra CLI options)
    ("knn", "ef_anomaly", [], []),
    ("knn", "ef", [], []),
    ("linear", "ef", ["protocol.epochs=40"], ["--seeds", "3"]),
    ("linear", "ef_anomaly", ["protocol.epochs=40"], ["--seeds", "3"]),
    (
        "label-sweep",
        "ef",
        ["protocol.fractions=[0.2,0.5,1.0]", "protocol.subset_seeds=[0,1]", "protocol.inner_config={epochs: 40}"],
        [],
    ),
    ("clip-variance", "ef", ["protocol.num_starts=4", "protocol.epochs=40"], []),
]


def run_all(home: Path, methods: list[str]) -> None:
    env = {**os.environ, "ECHOBENCH_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    for method in methods:
        for protocol, task, sets, extra in RUNS:
            argv = ["echobench", "run", "--method", method, "--protocol", protocol, "--task", task, *extra]
            for item in [*TINY, *sets]:
                argv += ["--set", item]
            print("+", " ".join(argv), flush=True)
            subprocess.run(argv, env=env, check=True)


def is_result(payload: object) -> bool:
    return isinstance(payload, dict) and {"schema", "method", "protocol", "metrics"} <= payload.keys()


def copy_results(source: Path, target: Path) -> int:
    """Copy result JSON (+ predictions) from ``source`` to ``target`` keeping their relative layout; the
    ``predictions_csv`` path becomes relative to the JSON file so the copy is portable."""
    if target.exists():
        shutil.rmtree(target)
    copied = 0
    for path in sorted(source.rglob("*.json")):
        payload = json.loads(path.read_text())
        if not is_result(payload):
            continue
        relative = path.relative_to(source)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        predictions = path.with_name(f"{path.stem}.predictions.csv")
        recorded = payload.get("predictions_csv")
        if not predictions.is_file() and recorded and Path(recorded).is_file():
            predictions = Path(recorded)
        if predictions.is_file():
            shutil.copyfile(predictions, destination.with_name(f"{path.stem}.predictions.csv"))
            payload["predictions_csv"] = f"{path.stem}.predictions.csv"
        else:
            payload["predictions_csv"] = None
        payload.pop("result_path", None)
        destination.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        copied += 1
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None, help="ECHOBENCH_HOME for the runs (default: temporary)")
    parser.add_argument("--methods", nargs="+", default=["videomae", "random_init"])
    parser.add_argument("--skip-runs", action="store_true", help="only copy the results already under --home")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="echobench-example-"))
    if not args.skip_runs:
        run_all(home, args.methods)
    copied = copy_results(home / "results", RESULTS)
    print(f"copied {copied} result files into {RESULTS}")
    board = ["echobench", "leaderboard", "synthecho", "--results", str(RESULTS), "--out", str(REPO / "leaderboards")]
    print("+", " ".join(board), flush=True)
    sys.exit(subprocess.run(board, cwd=REPO).returncode)


if __name__ == "__main__":
    main()
