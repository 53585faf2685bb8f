"""A tiny EchoNet-Dynamic-format folder for tests: a bright elliptic ring (myocardium) around a dark cavity.

The cavity's semi-axes scale with ``1 - 0.3 * (1 - cos(2π (t - ed) / frames)) / 2``, so the cavity is largest at
the ED frame and smallest at ``es = ed + frames // 2``. Both frames are traced in VolumeTracings.csv (ES first, so
a reader that takes the file order instead of the area gets ED/ES wrong).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from echobench.data.base import SPLITS

FPS = 50.0
CHORDS = 11


def cavity_axes(t: int, ed: int, frames: int, a0: float, b0: float) -> tuple[float, float]:
    """Cavity semi-axes (horizontal, vertical) of frame ``t``."""
    scale = 1.0 - 0.3 * (1.0 - np.cos(2.0 * np.pi * (t - ed) / frames)) / 2.0
    return a0 * scale, b0 * scale


def tracing_rows(cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Rows ``(CHORDS + 1, 4)`` of X1,Y1,X2,Y2: the long axis, then horizontal chords across the cavity."""
    ys = cy + b * np.linspace(-0.95, 0.95, CHORDS)
    half = a * np.sqrt(1.0 - ((ys - cy) / b) ** 2)
    chords = np.stack([cx - half, ys, cx + half, ys], axis=1)
    return np.concatenate([[[cx, cy - b, cx, cy + b]], chords])


def render_frame(size: int, cx: float, cy: float, a: float, b: float, noise: np.ndarray) -> np.ndarray:
    """One grey frame: ring of thickness ~size/14 around the cavity, plus speckle ``noise``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.sqrt(((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2)
    thickness = size / 14.0 / min(a, b)
    ring = (r >= 1.0) & (r <= 1.0 + thickness)
    image = np.where(ring, 200.0, np.where(r < 1.0, 15.0, 60.0)) + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def write_avi(path: Path, frames: np.ndarray, fps: float = FPS) -> None:
    """Write grey frames ``(T, H, W)`` uint8 as an MJPEG AVI."""
    t, h, w = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), isColor=True)
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()


def write_echonet_fixture(root: Path, videos: int = 6, frames: int = 20, size: int = 112, seed: int = 0) -> Path:
    """Write ``videos`` videos in EchoNet-Dynamic format under ``root``; return ``root``.

    Videos are split evenly over train/val/test in order; each split has two patients (``P<split><k>``).
    """
    root = Path(root)
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files, extras, traces = [], [], []
    for i in range(videos):
        name = f"0X{i:04d}"
        split = SPLITS[min(i * len(SPLITS) // max(videos, 1), len(SPLITS) - 1)]
        ed = int(rng.integers(0, frames // 2))
        es = ed + frames // 2
        cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
        a0, b0 = size * rng.uniform(0.16, 0.2), size * rng.uniform(0.26, 0.3)
        noise = rng.normal(0.0, 8.0, size=(frames, size, size))
        clip = np.stack(
            [render_frame(size, cx, cy, *cavity_axes(t, ed, frames, a0, b0), noise[t]) for t in range(frames)]
        )
        write_avi(root / "Videos" / f"{name}.avi", clip)
        areas = {}
        for frame in (es, ed):
            a, b = cavity_axes(frame, ed, frames, a0, b0)
            areas[frame] = np.pi * a * b
            for x1, y1, x2, y2 in tracing_rows(cx, cy, a, b):
                traces.append((f"{name}.avi", x1, y1, x2, y2, frame))
        # Area-length volume (ml at 0.1 mm/pixel is irrelevant here; only consistency matters).
        edv, esv = (0.85 * areas[f] ** 2 / (2 * cavity_axes(f, ed, frames, a0, b0)[1]) / 100.0 for f in (ed, es))
        files.append((name, 100.0 * (edv - esv) / edv, esv, edv, size, size, FPS, frames, split.upper()))
        extras.append((name, f"P{split}{i % 2}", int(rng.integers(0, 2)), float(rng.uniform(50, 100)), ed, es))
    pd.DataFrame(
        files, columns=["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
    ).to_csv(root / "FileList.csv", index=False)
    pd.DataFrame(traces, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(
        root / "VolumeTracings.csv", index=False
    )
    pd.DataFrame(extras, columns=["FileName", "PatientID", "MI", "HeartRate", "EDFrame", "ESFrame"]).to_csv(
        root / "FileListExtra.csv", index=False
    )
    return root
