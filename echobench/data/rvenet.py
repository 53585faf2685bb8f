"""RVENet format reader (Magyar et al., WACV 2023): apical-4-chamber DICOM cines with 3D-echo right-ventricular EF.

Layout::

    <root>/<labels>.csv        the release's label table, the one CSV at the root with columns
                               FileName,Split,RVEF,HR,FPS (more columns allowed)
    <root>/**/<FileName>.dcm   the DICOM cines, anywhere under <root> (the release ships one folder of them)

``FileName`` is ``<a>_<b>_<index>``; the patient is ``<a>_<b>`` (as the RVENet code groups videos). ``RVEF`` is in
percent; ``rvef`` and ``hr`` become labels, as does every other numeric column (lower-cased; text columns such as
the ultrasound system are not labels). Tasks: ``rvef`` (regression) and ``rv_anomaly`` (RVEF < 45 %, the
threshold of the RVENet paper and of its code's ``binary_classification_threshold``).

Splits: the release has ``train`` and ``validation`` (about 80:20 by patient) and no test set. The published
results are on ``validation``, so it is this benchmark's ``test`` split, and the validation split used for selection
is a deterministic 10 % of the training patients (hashed patient id). Rows already saying ``val``/``test`` keep them.

Frames: DICOMs are decoded to grey and cut to their declared ultrasound region
(:func:`~echobench.data.dicom_io.read_dicom_video`). Frame count and size come from each header, the frame rate
from the table's FPS. There are no LV tracings.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from echobench.data.base import CORE_COLUMNS, VideoDataset
from echobench.data.dicom_io import dicom_info, read_dicom_video
from echobench.data.patient_hash import patient_unit
from echobench.errors import UserError

COLUMNS = ("FileName", "Split", "RVEF", "HR", "FPS")
#: Share of training patients moved to the validation split.
VAL_SHARE = 0.1
SPLIT_NAMES = {"train": "train", "validation": "test", "val": "val", "test": "test"}


class RVENet(VideoDataset):
    """RVENet: A4C DICOM cines labelled with 3D-echo RVEF (see the module docstring)."""

    name: ClassVar[str] = "rvenet"
    version: ClassVar[str] = "1.0.0"
    layout: ClassVar[str] = "<root>/<labels>.csv (one CSV with " + ",".join(COLUMNS) + "), <root>/**/<FileName>.dcm"
    _ids: frozenset[str] = frozenset()

    def required_files(self) -> list[str]:
        return [self._label_csv().name]

    def label_files(self) -> list[Path]:
        return [self._label_csv()]

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        if video_id not in self._ids:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return {}

    def read_frames(self, path: str) -> np.ndarray:
        return read_dicom_video(path)

    def _label_csv(self) -> Path:
        """The root's CSV holding the label columns; the release names it, so it is found by its header."""
        candidates = [p for p in sorted(self.root.glob("*.csv")) if set(COLUMNS) <= set(_header(p))]
        if len(candidates) != 1:
            found = "none" if not candidates else ", ".join(p.name for p in candidates)
            raise UserError(
                f"{self.name} dataset at {self.root}: need exactly one CSV at the root with columns "
                f"{','.join(COLUMNS)} (found {found}); expected layout: {self.layout}"
            )
        return candidates[0]

    def _read_table(self) -> pd.DataFrame:
        path = self._label_csv()
        labels = pd.read_csv(path, dtype={"FileName": str, "Split": str})
        names = labels["FileName"].astype(str).str.strip().str.removesuffix(".dcm")
        patients = names.str.split("_").str[:2].str.join("_")
        split = labels["Split"].astype(str).str.strip().str.lower().map(SPLIT_NAMES)
        if split.isna().any():
            bad = labels["Split"][split.isna()].iloc[0]
            raise UserError(f"{path}: Split {bad!r} is not one of train, validation; fix the label table")
        carved = np.array([patient_unit(p, self.name) < VAL_SHARE for p in patients])
        split = split.where(~((split == "train").to_numpy() & carved), "val")
        dicoms = {p.stem: p for p in self.root.rglob("*.dcm")}
        paths = [dicoms.get(n, self.root / f"{n}.dcm") for n in names]
        info = [dicom_info(p) if p.is_file() else None for p in paths]
        table = pd.DataFrame(
            {
                "video_id": names,
                "path": [str(p) for p in paths],
                "split": split.to_numpy(),
                "patient_id": patients.to_numpy(),
                # A missing DICOM keeps placeholder metadata; the base class then reports it by name.
                "num_frames": [i.num_frames if i else 0 for i in info],
                "fps": pd.to_numeric(labels["FPS"], errors="coerce").to_numpy(),
                "height": [i.height if i else 0 for i in info],
                "width": [i.width if i else 0 for i in info],
                "ed_frame": -1,
                "es_frame": -1,
            }
        )
        for column in labels.columns.drop(["FileName", "Split", "FPS"]):
            values = pd.to_numeric(labels[column], errors="coerce")
            text = labels[column].notna() & values.isna()
            if not text.any() and column.lower() not in CORE_COLUMNS:
                table[column.lower()] = values.to_numpy()
        if "rvef" not in table.columns:
            raise UserError(f"{path}: column RVEF holds non-numeric values; RVEF must be a number in percent")
        self._ids = frozenset(names)
        return table


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return []
