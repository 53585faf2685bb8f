"""A tiny MIMIC-IV-ECHO-format folder: echo-record-list.csv and files/pNN/pNNNNNNNN/sNNNNNNNN/*.dcm.

Each of three training-split patients has one study of two cines and one single-frame still; the first cine of a
study declares an ultrasound region below a bright banner, the second (monochrome) declares none. One listed file
is not on disk, as in a partial download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from dicom_fixture import write_dicom
from sector_video import sector_clip

from echobench.data.mimic_echo import TEST_SHARE, VAL_SHARE
from echobench.data.patient_hash import hashed_split

HEIGHT, WIDTH, BANNER = 48, 64, 8
REGION = (0, BANNER, WIDTH - 1, HEIGHT - 1)


def training_subjects(count: int = 3) -> list[str]:
    subjects = (str(10_000_000 + k) for k in range(1000))
    return [s for s in subjects if hashed_split(s, "mimic-iv-echo", VAL_SHARE, TEST_SHARE) == "train"][:count]


def write_mimic_fixture(root: Path, frames: int = 16, seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for k, subject in enumerate(training_subjects()):
        study = str(90_000_000 + k)
        folder = Path("files") / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        for n in range(4):
            rel = folder / f"{study}_{n + 1:04d}.dcm"
            rows.append((subject, study, f"2018-01-0{k + 1} 10:0{n}:00", rel.as_posix()))
            clip = np.zeros((frames, HEIGHT, WIDTH), np.uint8)
            clip[:, BANNER:] = sector_clip(frames, HEIGHT - BANNER, WIDTH, rng)
            if n == 0:
                clip[:, 1 : BANNER - 2, 2:60] = 235
                write_dicom(root / rel, clip, fps=30.0, photometric="YBR_FULL", region=REGION)
            elif n == 1:
                write_dicom(root / rel, clip, fps=30.0, photometric="MONOCHROME2")
            elif n == 2:
                write_dicom(root / rel, clip[:1], photometric="RGB")  # a still, not a video
            # n == 3: listed but not downloaded
    pd.DataFrame(rows, columns=["subject_id", "study_id", "acquisition_datetime", "dicom_filepath"]).to_csv(
        root / "echo-record-list.csv", index=False
    )
    return root
