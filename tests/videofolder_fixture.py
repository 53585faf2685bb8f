"""A tiny generic video folder: ``labels.csv`` plus AVI and MP4 videos in a subfolder, two videos per patient."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from echonet_fixture import write_avi
from sector_video import sector_clip

SPLITS = ("TRAIN", "train", "Train", "train", "val", "val", "test", "test")


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    t, h, w = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), isColor=True)
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()


def write_videofolder_fixture(root: Path, frames: int = 16, seed: int = 0) -> Path:
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i, split in enumerate(SPLITS):
        name = f"videos/clip{i}.{'mp4' if i % 2 else 'avi'}"
        clip = sector_clip(frames, 36, 48, rng)
        (write_mp4 if i % 2 else write_avi)(root / name, clip, fps=25.0)
        ed = "" if i == 0 else str(i % 4)
        rows.append((name, split, f"subject{i // 2}", ed, 40.0 + 4 * i, "" if i == 1 else float(i % 2)))
    pd.DataFrame(rows, columns=["FileName", "Split", "PatientID", "EDFrame", "EF", "Hypertension"]).to_csv(
        root / "labels.csv", index=False
    )
    return root
