"""Decoder throughput (PyAV luma plane vs OpenCV VideoCapture) on MJPEG AVIs, and `data prepare` with 2 workers vs 1.

    python benchmarks/decode.py                  # SynthEcho, 40 videos x 64 frames at 112², in a temp folder
    python benchmarks/decode.py --videos 100 --frames 128

Prints frames/s of each decoder (best of 3: the run least disturbed by other processes on a shared machine) with
their ratio, and the wall time of filling the decode cache through ``DecodeCache.build(workers=...)`` (what
``echobench data prepare`` runs) with 1 and 2 worker processes, each into a fresh cache folder, with the speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Run as a script, this folder is on sys.path: the OpenCV reader is the one decode_cache.py measures.
from decode_cache import opencv_gray

from echobench.data.decode_cache import DecodeCache
from echobench.data.echonet import EchoNetDynamic
from echobench.data.synthecho.generate import synthesize
from echobench.data.video_io import read_video_gray


def frames_per_second(decode: Callable[[str], np.ndarray], paths: list[str], repeats: int = 3) -> float:
    best = np.inf
    total = 0
    for _ in range(repeats):
        start = time.perf_counter()
        total = sum(len(decode(p)) for p in paths)
        best = min(best, time.perf_counter() - start)
    return total / best


def prepare_seconds(root: Path, cache_root: Path, workers: int, size: int) -> float:
    start = time.perf_counter()
    DecodeCache.build(EchoNetDynamic(root), size, root=cache_root, progress=False, workers=workers)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=112, help="decode-cache working size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize(Path(tmp) / "synth", videos=args.videos, seed=0, frames=args.frames, progress=False)
        paths = sorted(str(p) for p in (root / "Videos").glob("*.avi"))
        pyav = frames_per_second(read_video_gray, paths)
        opencv = frames_per_second(opencv_gray, paths)
        print(f"{len(paths)} MJPEG AVIs x {args.frames} frames")
        print(f"PyAV luma plane (chosen)  {pyav:10,.0f} frames/s")
        print(f"OpenCV VideoCapture+grey  {opencv:10,.0f} frames/s")
        print(f"ratio PyAV / OpenCV       {pyav / opencv:10.2f}x")
        one = prepare_seconds(root, Path(tmp) / "cache1", workers=1, size=args.size)
        two = prepare_seconds(root, Path(tmp) / "cache2", workers=2, size=args.size)
        print(f"data prepare, 1 worker    {one:10.2f} s")
        print(f"data prepare, 2 workers   {two:10.2f} s")
        print(f"speed-up 2 vs 1 workers   {one / two:10.2f}x")


if __name__ == "__main__":
    main()
