"""A tiny RVENet-format folder: the label CSV and RGB DICOM cines (with a declared ultrasound region) in a subfolder.

Patients are chosen so the benchmark's hashed validation carve-out takes exactly one of the three training
patients; the fourth patient is the release's ``validation`` split (the benchmark's test split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from dicom_fixture import write_dicom
from sector_video import sector_clip

from echobench.data.patient_hash import patient_unit
from echobench.data.rvenet import VAL_SHARE

HEIGHT, WIDTH, BANNER = 48, 56, 6
#: Declared region (min_x, min_y, max_x, max_y), inclusive: everything below the banner.
REGION = (0, BANNER, WIDTH - 1, HEIGHT - 1)


def fixture_patients() -> list[str]:
    """Two training patients that stay in training, then one the carve-out moves to validation."""
    ids = [f"{k:04X}_RV" for k in range(200)]
    kept = [p for p in ids if patient_unit(p, "rvenet") >= VAL_SHARE]
    carved = [p for p in ids if patient_unit(p, "rvenet") < VAL_SHARE]
    return [*kept[:2], carved[0]]


def write_rvenet_fixture(root: Path, frames: int = 16, seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    train = fixture_patients()
    plan = [(p, "train") for p in train for _ in range(2)] + [("FFFF_RV", "validation")] * 2
    rows = []
    for i, (patient, split) in enumerate(plan):
        name = f"{patient}_{i}"
        clip = np.zeros((frames, HEIGHT, WIDTH), np.uint8)
        clip[:, BANNER:] = sector_clip(frames, HEIGHT - BANNER, WIDTH, rng)
        clip[:, 1 : BANNER - 1, 4:40] = 230  # the patient banner the declared region excludes
        write_dicom(root / "DICOM" / f"{name}.dcm", clip, fps=50.0, photometric="RGB", region=REGION)
        rvef = 35.0 + 4.0 * i
        rows.append((name, split, rvef, 60 + i, 50.0, 40 + i, "VividE9"))
    pd.DataFrame(rows, columns=["FileName", "Split", "RVEF", "HR", "FPS", "Age", "UltrasoundSystem"]).to_csv(
        root / "RVENet_labels.csv", index=False
    )
    return root
