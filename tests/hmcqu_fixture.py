"""A tiny HMC-QU folder: AVIs of a bright LV-wall ring on a grey background, the A4C/A2C label sheets as xlsx, and
LV-wall masks as .mat files at a smaller square size (as the release's 224x224 masks of larger frames).

Patients ``ES000{i}`` for i in 1..10 have an A4C recording; MI (segments 3 and 9) for odd i. Patients 1 and 2 also
have an A2C recording. The annotated cycle starts at frame ``REFERENCE[i]`` (1-based, as the sheet counts).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import scipy.io
from echonet_fixture import write_avi

HEIGHT, WIDTH, FRAMES, MASK_SIDE = 40, 56, 16, 28
A4C_SEGMENTS = ("SEG3", "SEG9", "SEG14", "SEG16", "SEG12", "SEG6")
A2C_SEGMENTS = ("SEG4", "SEG10", "SEG15", "SEG13", "SEG7", "SEG1")
PATIENTS = 10
#: Recordings (patient index) that get a mask file.
MASKED = (1, 2, 3)


def echo_name(i: int, view: str) -> str:
    return f"ES000{i} _4CH_1" if view == "A4C" else f"ES000{i}_CH2_1"


def reference_frame(i: int) -> int:
    return 1 + i % 3


def wall(t: int) -> np.ndarray:
    """Boolean LV-wall ring of frame ``t`` at the source resolution."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    scale = 1.0 - 0.25 * (1 - np.cos(2 * np.pi * t / FRAMES)) / 2
    r = np.sqrt(((xx - WIDTH / 2) / (9 * scale)) ** 2 + ((yy - HEIGHT / 2) / (13 * scale)) ** 2)
    return (r >= 1.0) & (r < 1.6)


def write_hmcqu_fixture(root: Path, with_a2c: bool = True) -> Path:
    """Write the folder under ``root``; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(0)
    (root / "LV Ground-truth Segmentation Masks").mkdir(parents=True, exist_ok=True)
    sheets: dict[str, list[dict[str, object]]] = {"A4C": [], "A2C": []}
    for i in range(1, PATIENTS + 1):
        views = ("A4C", "A2C") if with_a2c and i <= 2 else ("A4C",)
        for view in views:
            name = echo_name(i, view)
            folder = root / "HMC-QU" / view
            folder.mkdir(parents=True, exist_ok=True)
            rings = np.stack([wall(t) for t in range(FRAMES)])
            frames = np.where(rings, 210.0, 70.0) + rng.normal(0, 4, rings.shape)
            write_avi(folder / f"{name}.avi", np.clip(frames, 0, 255).astype(np.uint8), fps=25.0)
            segments = A4C_SEGMENTS if view == "A4C" else A2C_SEGMENTS
            labels = {s: ("MI" if i % 2 == 1 and k < 2 else "non-MI") for k, s in enumerate(segments)}
            ref = reference_frame(i)
            sheets[view].append({"ECHO": name, **labels, "Reference Frame": ref, "End of Cycle": ref + 10})
            if view == "A4C" and i in MASKED:
                cycle = rings[ref - 1 : ref + 10].astype(np.uint8)
                side = (MASK_SIDE, MASK_SIDE)
                small = np.stack([cv2.resize(m, side, interpolation=cv2.INTER_NEAREST) for m in cycle])
                scipy.io.savemat(root / "LV Ground-truth Segmentation Masks" / f"Mask_{name}.mat", {"predicted": small})
    for view, rows in sheets.items():
        if rows:
            pd.DataFrame(rows).to_excel(root / f"{view}.xlsx", index=False)
    return root
