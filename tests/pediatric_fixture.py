"""A tiny EchoNet-Pediatric-format folder: A4C and PSAX subfolders with fold-numbered file lists and point tracings.

Videos reuse the EchoNet fixture's beating ellipse; each traced frame is written as ``POINTS`` border points of the
cavity ellipse (ES first, so a reader that trusts file order gets ED/ES wrong). The last A4C video's systolic
tracing is the release's ``No Systolic`` placeholder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from echonet_fixture import cavity_axes, render_frame, write_avi

POINTS = 24
#: Folds per view: train (0-7), val (8) and test (9) are all present in both views together.
FOLDS = {"A4C": (0, 3, 7, 8, 9), "PSAX": (1, 8, 9)}


def ellipse_points(cx: float, cy: float, a: float, b: float, count: int = POINTS) -> np.ndarray:
    """``(count, 2)`` points ``(x, y)`` on the ellipse, in order around it."""
    theta = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
    return np.stack([cx + a * np.cos(theta), cy + b * np.sin(theta)], axis=1)


def write_pediatric_fixture(root: Path, frames: int = 16, size: int = 48, seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    for view, folds in FOLDS.items():
        (root / view / "Videos").mkdir(parents=True, exist_ok=True)
        files, traces = [], []
        for i, fold in enumerate(folds):
            name = f"CR{view}{i:03d}-000{i}"
            ed = int(rng.integers(0, frames // 2))
            es = ed + frames // 2
            cx, cy = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
            a0, b0 = size * rng.uniform(0.16, 0.2), size * rng.uniform(0.24, 0.28)
            noise = rng.normal(0.0, 6.0, size=(frames, size, size))
            clip = np.stack(
                [render_frame(size, cx, cy, *cavity_axes(t, ed, frames, a0, b0), noise[t]) for t in range(frames)]
            )
            write_avi(root / view / "Videos" / f"{name}.avi", clip)
            no_systole = view == "A4C" and i == len(folds) - 1
            for frame in (es, ed):
                if frame == es and no_systole:
                    traces.append((f"{name}.avi", 0.0, 0.0, "No Systolic"))
                    continue
                for x, y in ellipse_points(cx, cy, *cavity_axes(frame, ed, frames, a0, b0)):
                    traces.append((f"{name}.avi", x, y, str(frame)))
            sex = "M" if i % 2 else "F"
            files.append((f"{name}.avi", float(rng.uniform(30, 70)), sex, float(i + 2), 10.0 + i, 80.0 + i, fold))
        pd.DataFrame(files, columns=["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"]).to_csv(
            root / view / "FileList.csv", index=False
        )
        pd.DataFrame(traces, columns=["FileName", "X", "Y", "Frame"]).to_csv(
            root / view / "VolumeTracings.csv", index=False
        )
    return root
