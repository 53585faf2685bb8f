"""Decode cache vs decoding AVIs per item: one epoch of training clips, and decoder speed (PyAV vs OpenCV).

    python benchmarks/decode_cache.py                 # SynthEcho, 100 videos x 128 frames, in a temp folder
    python benchmarks/decode_cache.py --root DIR      # any EchoNet-format folder

Prints frames/s of each decoder on the folder's AVIs (how ``video_io`` chose its decoder), the one-off cost of
building the cache, and the time of one epoch of training-clip loading (16 frames, stride 2, 112², batch 8,
num_workers 0) from the cache and from the AVIs, with their ratio (goal >= 10x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from echobench.api import ClipSpec
from echobench.data.decode_cache import DecodeCache
from echobench.data.echonet import EchoNetDynamic
from echobench.data.loader import ClipDataset, ClipSample, collate_clips
from echobench.data.sampling import clip_indices
from echobench.data.synthecho.generate import synthesize
from echobench.data.video_io import read_video_gray, resize_frames

SPEC = ClipSpec(frames=16, stride=2, size=112)
BATCH = 8


def make_dataset(folder: Path, videos: int, frames: int) -> Path:
    """A SynthEcho folder of the requested size."""
    return synthesize(folder, videos=videos, seed=0, frames=frames, progress=False)


def pyav_to_ndarray(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def opencv_gray(path: str) -> np.ndarray:
    capture = cv2.VideoCapture(path)
    frames = []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2GRAY))
    capture.release()
    return np.stack(frames)


def decode_rate(decode: Callable[[str], np.ndarray], paths: list[str]) -> float:
    start = time.perf_counter()
    frames = sum(len(decode(p)) for p in paths)
    return frames / (time.perf_counter() - start)


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    """Fastest of several runs: the least disturbed by other processes on a shared machine."""
    return min(measure() for _ in range(repeats))


class AviClipDataset(Dataset[ClipSample]):
    """The baseline: the same clips as :class:`ClipDataset`, but decoding and resizing the AVI for every item."""

    def __init__(self, paths: list[str], mean: float, std: float, seed: int) -> None:
        self.paths, self.mean, self.std, self.seed = paths, mean, std, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> ClipSample:
        video = resize_frames(read_video_gray(self.paths[i]), SPEC.size)
        indices = clip_indices(len(video), SPEC, np.random.default_rng([self.seed, 0, i]))
        clip = (torch.from_numpy(video[indices.reshape(-1)]).float() / 255.0 - self.mean) / self.std
        return ClipSample([clip.view(1, SPEC.frames, SPEC.size, SPEC.size)], indices, 50.0, str(i), None)


def epoch_seconds(dataset: Dataset[ClipSample]) -> float:
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=False, num_workers=0, collate_fn=collate_clips)
    start = time.perf_counter()
    for batch in loader:
        batch.clips.sum()  # touch the data, as a training step would
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="EchoNet-format folder (default: generate one in a temp folder)")
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the fastest is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or make_dataset(Path(tmp) / "data", args.videos, args.frames)
        dataset = EchoNetDynamic(root)
        paths = list(dataset.table["path"])
        print(f"{len(paths)} videos, {int(dataset.table['num_frames'].sum())} frames listed, at {root}")

        decoders = {
            "PyAV luma plane (read_video_gray)": read_video_gray,
            "PyAV to_ndarray('gray')": pyav_to_ndarray,
            "OpenCV VideoCapture + BGR->grey": opencv_gray,
        }
        seconds: dict[str, list[float]] = {name: [] for name in decoders}
        for _ in range(args.repeats):  # interleaved, so load from other processes hits every decoder alike
            for name, decode in decoders.items():
                seconds[name].append(1.0 / decode_rate(decode, paths))
        for name, per_frame in seconds.items():
            print(f"decode {name:36s} {1.0 / min(per_frame):9.0f} frames/s (best of {args.repeats})")

        start = time.perf_counter()
        cache = DecodeCache.build(dataset, SPEC.size, root=Path(tmp) / "decoded", progress=False)
        print(f"build decode cache (one-off)               {time.perf_counter() - start:9.2f} s")
        mean, std = cache.stats(dataset.table["video_id"])
        clips = ClipDataset(cache, dataset.table, SPEC, mean, std, seed=0)
        from_avi = AviClipDataset(paths, mean, std, seed=0)
        epoch_seconds(clips)  # warm the page cache so both runs read from memory
        cached = best_of(args.repeats, lambda: epoch_seconds(clips))
        decoded = best_of(args.repeats, lambda: epoch_seconds(from_avi))
        print(f"epoch of training clips from decode cache  {cached:9.3f} s (best of {args.repeats})")
        print(f"epoch of training clips decoding AVIs      {decoded:9.3f} s (best of {args.repeats})")
        print(f"speed-up of the decode cache               {decoded / cached:9.1f}x  (goal >= 10x)")


if __name__ == "__main__":
    main()
