"""A tiny EchoNet-LVH-format folder: MeasurementsList.csv plus native-size, non-square PLAX-like AVIs in Batch1-4.

Every video has the three diastolic measurements on its ED frame; all but the last also the systolic ones on its ES
frame. The first video's IVSd is measured twice (the reader averages). Rows carry the release's unnamed index
column and caliper coordinates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from echonet_fixture import write_avi
from sector_video import sector_clip

SPLITS = ("train", "train", "train", "val", "val", "test", "test")
CALCS = {"IVSd": 1.0, "LVIDd": 4.8, "LVPWd": 0.9, "IVSs": 1.4, "LVIDs": 3.1, "LVPWs": 1.3}
HEIGHT, WIDTH, FPS = 40, 56, 30.0


def write_lvh_fixture(root: Path, frames: int = 16, seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i, split in enumerate(SPLITS):
        name = f"0X{i:02d}AB{seed:02d}CD"
        batch = root / f"Batch{i % 4 + 1}"
        batch.mkdir(parents=True, exist_ok=True)
        write_avi(batch / f"{name}.avi", sector_clip(frames, HEIGHT, WIDTH, rng), fps=FPS)
        ed, es = 2 + i % 3, 9 + i % 4
        measured = [(c, CALCS[c] * (1.0 + 0.1 * i)) for c in CALCS if c.endswith("d") or i < len(SPLITS) - 1]
        if i == 0:
            measured.append(("IVSd", CALCS["IVSd"] + 0.2))
        for calc, value in measured:
            x1, y1 = rng.uniform(10, 40), rng.uniform(5, 30)
            frame = ed if calc.endswith("d") else es
            rows.append((name, calc, value, frame, x1, x1 + 5, y1, y1 + 8, frames, FPS, WIDTH, HEIGHT, split))
    table = pd.DataFrame(
        rows,
        columns=[
            "HashedFileName",
            "Calc",
            "CalcValue",
            "Frame",
            "X1",
            "X2",
            "Y1",
            "Y2",
            "Frames",
            "FPS",
            "Width",
            "Height",
            "split",
        ],
    )
    table.to_csv(root / "MeasurementsList.csv")  # the release keeps pandas' index as a first, unnamed column
    return root
