"""Cost of the frozen suite relative to one encode pass, for one checkpoint on SynthEcho.

    python benchmarks/frozen_suite.py [--method random_init] [--profile quick] [--set ...]

Measures, in one process and with a fresh ``$ECHOBENCH_HOME`` (data, decode cache, checkpoint and MLflow store are
made by an untimed warm-up run first):

* ``encode``: one encode pass — train, val and test through the method's encoder into the embedding cache;
* ``suite``: ``knn`` + ``linear`` + ``label-sweep`` (4 fractions x 3 seeds of the linear probe), each a full
  ``echobench run`` (resolve, embedding cache, protocol, MLflow run, result JSON), starting from an empty
  embedding cache, so the suite pays its own encode pass once.

Prints ``suite / encode``; the goal is <= 1.3 (the protocols on cached embeddings cost at most 30 % of an
encode pass). The encode pass is measured a second time in a fresh embedding cache after the suite, and the
ratio uses the mean of the two, because this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from echobench.console import console
from echobench.paths import embeddings_dir
from echobench.runner import execute, prepare, resolve

PROTOCOLS = ("knn", "linear", "label-sweep")


def encode_pass(method: str, sets: list[str], profile: str) -> float:
    """Seconds to encode train, val and test of the suite's checkpoint into an empty embedding cache."""
    shutil.rmtree(embeddings_dir(), ignore_errors=True)
    context = prepare(resolve(method, "knn", sets=sets, profile=profile))
    started = time.perf_counter()
    for split in ("train", "val", "test"):
        context.encode(split)
    return time.perf_counter() - started


def suite_pass(method: str, sets: list[str], profile: str) -> dict[str, float]:
    """Seconds of each protocol of the suite, run in order from an empty embedding cache."""
    shutil.rmtree(embeddings_dir(), ignore_errors=True)
    timings = {}
    for protocol in PROTOCOLS:
        started = time.perf_counter()
        execute(resolve(method, protocol, task="ef", sets=sets, profile=profile), force=True)
        timings[protocol] = time.perf_counter() - started
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="random_init")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="echobench-frozen-suite-"))
    os.environ["ECHOBENCH_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    encodes: list[float] = []
    suites: list[dict[str, float]] = []
    try:
        # Untimed: builds SynthEcho, the decode cache, the checkpoint and the MLflow store, and warms imports and the
        # page cache, so that both sides of the ratio pay only per-run costs.
        execute(resolve(args.method, "knn", task="ef", sets=args.sets, profile=args.profile), force=True)
        for _ in range(args.rounds):
            encodes.append(encode_pass(args.method, args.sets, args.profile))
            suites.append(suite_pass(args.method, args.sets, args.profile))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    for i, (encode, suite) in enumerate(zip(encodes, suites, strict=True)):
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in suite.items())
        console.print(f"round {i}: encode pass {encode:.2f} s; {parts}; ratio {sum(suite.values()) / encode:.2f}")
    encode, suite = statistics.median(encodes), statistics.median(sum(s.values()) for s in suites)
    ratio = suite / encode
    print(f"(knn + linear + label-sweep 4x3) / encode pass, medians of {args.rounds} rounds = ")
    print(f"{suite:.2f} s / {encode:.2f} s = {ratio:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
