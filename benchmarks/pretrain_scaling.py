"""Pretraining steps/s with 1 versus 2 data-parallel processes (torchrun, gloo on CPU / NCCL on GPU), in one run.

Both runs pretrain VideoMAE on the same SynthEcho copy with the same global batch, seed and steps, each in a fresh
``$ECHOBENCH_HOME``; the rate is measured between the first and last step's MLflow loss timestamps (rank 0 logs every
step), so process start-up, decoding and checkpointing at the end are left out. Each process gets
``cores / processes`` threads, so the two runs use the same CPU budget: on a CPU the ratio shows what splitting the
batch over processes costs or gains against one process using every core; on GPUs each process drives its own GPU.

Usage: ``python benchmarks/pretrain_scaling.py [--steps 20] [--batch 8] [--model vit_tiny]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def pretrain_rate(processes: int, root: Path, args: argparse.Namespace, threads: int) -> float:
    home = Path(tempfile.mkdtemp(prefix=f"scaling-{processes}-"))
    env = {**os.environ, "ECHOBENCH_HOME": str(home), "OMP_NUM_THREADS": str(threads)}
    env.pop("MLFLOW_TRACKING_URI", None)
    sets = {
        "method.model": args.model,
        "method.frames": 8,
        "method.stride": 2,
        "method.size": 64,
        "method.patch": 16,
        "method.decoder_depth": 2,
        "pretrain.steps": args.steps,
        "pretrain.batch_size": args.batch,
        "pretrain.log_every": 1,
        "pretrain.checkpoint_every": 10**6,
        "pretrain.amp": '"off"',
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command += ["-m", "echobench", "pretrain", "--method", "videomae", "--data-root", str(root)]
    command += [item for key, value in sets.items() for item in ("--set", f"{key}={value}")]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("echobench-pretrain").experiment_id])
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    seconds = (history[-1].timestamp - history[0].timestamp) / 1000
    return (history[-1].step - history[0].step) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="vit_tiny")
    args = parser.parse_args()
    from echobench.data.synthecho import synthesize

    root = synthesize(Path(tempfile.mkdtemp(prefix="scaling-data-")) / "se", videos=48, seed=0, frames=32)
    cores = len(os.sched_getaffinity(0))
    rates = {n: pretrain_rate(n, root, args, max(1, cores // n)) for n in (1, 2)}
    print(f"{args.model}, global batch {args.batch}, {args.steps} steps, {cores} cores (threads split evenly)")
    for processes, rate in rates.items():
        print(f"  {processes} process(es): {rate:.2f} steps/s")
    print(f"  2 vs 1 processes: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
