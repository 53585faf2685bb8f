"""HMC-QU (Hamad Medical Corporation / Qatar University; Degerli et al., IEEE Access 2021; Kiranyaz et al., IEEE
Access 2020): apical 4- and 2-chamber recordings labelled per myocardial segment as MI / non-MI.

Layout (the Kaggle release ``aysendegerli/hmcqu-dataset``)::

    <root>/A4C.xlsx    ECHO, SEG3, SEG9, SEG14, SEG16, SEG12, SEG6, Reference Frame, End of Cycle, ...
    <root>/A2C.xlsx    ECHO, SEG4, SEG10, SEG15, SEG13, SEG7, SEG1, Reference Frame, End of Cycle   (optional)
    <root>/HMC-QU/A4C/<ECHO>.avi, <root>/HMC-QU/A2C/<ECHO>.avi
    <root>/LV Ground-truth Segmentation Masks/Mask_<ECHO>.mat   LV-wall masks of some A4C recordings (optional)

Facts relied on (public code, used as a source of facts only): the A4C/A2C sheets' columns and values ("MI" /
"non-MI", 1-based "Reference Frame" and "End of Cycle" bounding one cardiac cycle) as exported in
FUZHANGCHENG-23071497/Myocardial_infarction_detection; the folder names and the masks' MATLAB variable
``predicted`` of shape (cycle frames, 224, 224), one map per frame from the reference frame on, from the HMC-QU
loader of Phrungck/myocardial-segmentation (which resizes whole video frames to the masks' square).

Table: one row per sheet row (``video_id`` = ECHO). ``patient_id`` is the leading ``ES<digits>`` of ECHO (an A4C and
an A2C recording of one patient share it). Labels: ``mi`` = 1 when any segment is MI, ``mi_segments`` = the number
of MI segments. ``ed_frame`` = the cycle's reference frame (0-based); HMC-QU marks no ES frame (-1).

Splits: HMC-QU publishes none; the papers use 5-fold cross-validation. Patients are assigned to ``folds`` folds by
:func:`echobench.data.subsets.kfold_patient_splits` (stratified by ``mi``, seeded); by default fold 0 is test,
fold 1 validation and folds 2-4 train. Pass ``test_fold``/``val_fold`` to rotate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import av
import cv2
import numpy as np
import pandas as pd
import scipy.io

from echobench.data.base import VideoDataset
from echobench.data.subsets import kfold_patient_splits
from echobench.errors import UserError

VIEWS = {"A4C": "A4C.xlsx", "A2C": "A2C.xlsx"}
MASK_FOLDER = "LV Ground-truth Segmentation Masks"
MASK_VARIABLE = "predicted"
SEGMENT_VALUES = {"mi": 1, "non-mi": 0}
PATIENT = re.compile(r"ES\d+")


def patient_of(echo: str) -> str:
    """The patient of a recording name: ``"ES0001 _4CH_1"`` -> ``"ES0001"``."""
    found = PATIENT.match(echo)
    if found is None:
        raise UserError(f"HMC-QU recording name {echo!r} does not start with ES<digits>; fix the ECHO column")
    return found.group()


def _header(path: Path) -> tuple[int, float, int, int]:
    """(frames, fps, height, width) from the AVI header; zeros for a missing or unreadable file, which the base
    class or ``data verify`` report."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate
            return int(stream.frames), float(rate) if rate else float("nan"), stream.height, stream.width
    except (av.FFmpegError, IndexError, OSError):
        return 0, float("nan"), 0, 0


class HmcQu(VideoDataset):
    """HMC-QU A4C (and A2C when its sheet is present) recordings with MI labels and patient-grouped folds."""

    name: ClassVar[str] = "hmc-qu"
    version: ClassVar[str] = "1.0.0"
    layout: ClassVar[str] = (
        "<root>/A4C.xlsx (ECHO, SEG* = MI/non-MI, Reference Frame, End of Cycle), optional <root>/A2C.xlsx, "
        "<root>/HMC-QU/A4C/<ECHO>.avi, <root>/HMC-QU/A2C/<ECHO>.avi, optional "
        f"<root>/{MASK_FOLDER}/Mask_<ECHO>.mat"
    )
    mask_classes: ClassVar[tuple[str, ...]] = ("lv_wall",)

    def __init__(self, root: Path, folds: int = 5, test_fold: int = 0, val_fold: int = 1, seed: int = 0) -> None:
        if not (0 <= test_fold < folds and 0 <= val_fold < folds and test_fold != val_fold):
            raise UserError(
                f"HMC-QU folds: test_fold {test_fold} and val_fold {val_fold} must differ and lie in 0..{folds - 1}"
            )
        self.folds, self.test_fold, self.val_fold, self.seed = folds, test_fold, val_fold, seed
        #: Fold (0..folds-1) of every patient.
        self.patient_fold: dict[str, int] = {}
        super().__init__(root)

    def required_files(self) -> list[str]:
        return [VIEWS["A4C"]]

    def _views(self) -> list[str]:
        return [view for view, sheet in VIEWS.items() if (self.root / sheet).is_file()]

    def label_files(self) -> list[Path]:
        return [self.root / VIEWS[view] for view in self._views()]

    def video_files(self) -> list[Path]:
        return sorted(p for view in self._views() for p in (self.root / "HMC-QU" / view).glob("*.avi"))

    def _read_table(self) -> pd.DataFrame:
        rows = [row for view in self._views() for row in self._sheet_rows(view)]
        table = pd.DataFrame(rows)
        targets = table["mi"].to_numpy(np.int64)
        splits = kfold_patient_splits(list(table["patient_id"]), targets, self.folds, self.seed, stratify=True)
        fold = np.empty(len(table), dtype=np.int64)
        for index, (_, held_out) in enumerate(splits):
            fold[held_out] = index
        self.patient_fold = dict(zip(table["patient_id"], fold.tolist(), strict=True))
        table["split"] = np.where(fold == self.test_fold, "test", np.where(fold == self.val_fold, "val", "train"))
        return table

    def _sheet_rows(self, view: str) -> list[dict[str, object]]:
        path = self.root / VIEWS[view]
        try:
            sheet = pd.read_excel(path, dtype={"ECHO": str}, engine="openpyxl")
        except (ValueError, OSError, KeyError) as err:
            raise UserError(f"cannot read {path} ({err}); expected layout: {self.layout}") from err
        segments = [c for c in sheet.columns if str(c).upper().startswith("SEG")]
        absent = [c for c in ("ECHO", "Reference Frame") if c not in sheet.columns]
        if absent or not segments:
            raise UserError(f"{path} lacks columns {absent or ['SEG*']}; expected layout: {self.layout}")
        rows = []
        for _, record in sheet.dropna(subset=["ECHO"]).iterrows():
            echo = str(record["ECHO"]).strip()
            values = [str(record[c]).strip().lower() for c in segments]
            unknown = sorted(set(values) - set(SEGMENT_VALUES))
            if unknown:
                raise UserError(f"{path}: {echo} has segment labels {unknown}; use MI or non-MI")
            video = self.root / "HMC-QU" / view / f"{echo}.avi"
            frames, fps, height, width = _header(video)
            mi_segments = sum(SEGMENT_VALUES[v] for v in values)
            rows.append(
                {
                    "video_id": echo,
                    "path": str(video),
                    "split": "train",
                    "patient_id": patient_of(echo),
                    "num_frames": frames,
                    "fps": fps,
                    "height": height,
                    "width": width,
                    # The sheet counts frames from 1; the cycle starts at end-diastole.
                    "ed_frame": int(record["Reference Frame"]) - 1,
                    "es_frame": -1,
                    "mi": int(mi_segments > 0),
                    "mi_segments": mi_segments,
                }
            )
        return rows

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        """HMC-QU ships label maps, not contours: see :meth:`masks`."""
        self._locate(video_id)
        return {}

    def masks(self, video_id: str) -> dict[int, np.ndarray]:
        """LV-wall maps (1 = wall) of every frame of the annotated cycle, stretched from the release's square back
        to the video's ``(height, width)``; empty for recordings without a mask file."""
        row = self._locate(video_id)
        path = self.root / MASK_FOLDER / f"Mask_{video_id}.mat"
        if not path.is_file():
            return {}
        try:
            maps = np.asarray(scipy.io.loadmat(path)[MASK_VARIABLE])
        except (KeyError, ValueError, OSError) as err:
            raise UserError(f"{path} has no readable '{MASK_VARIABLE}' array ({err}); restore it") from err
        height, width, start = int(row["height"]), int(row["width"]), int(row["ed_frame"])
        return {
            start + i: cv2.resize((m > 0).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
            for i, m in enumerate(maps.reshape(-1, *maps.shape[-2:]))
        }

    def _locate(self, video_id: str) -> pd.Series:
        rows = self.table.index[self.table["video_id"] == video_id]
        if len(rows) == 0:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return self.table.loc[rows[0]]
