"""MIMIC-IV-ECHO (PhysioNet, Gow et al.): unlabelled DICOM echo studies for self-supervised pretraining.

Layout (as the PhysioNet release unpacks)::

    <root>/echo-record-list.csv   subject_id,study_id,acquisition_datetime,dicom_filepath
    <root>/files/pNN/pNNNNNNNN/sNNNNNNNN/<study>_<nnnn>.dcm   (dicom_filepath, relative to <root>)

Every multi-frame DICOM (a cine) is one video; single-frame files (spectral Doppler stills, measurement screens)
are not videos and are left out, as are listed files not on disk (the release is ~500k files and is often
downloaded in part). There are no labels. Splits are by patient: a hash of ``subject_id`` puts 90 % of patients
in train, 5 % in val and 5 % in test, the same on every machine.

Frames are grey and cut to the DICOM's declared ultrasound region (:func:`~echobench.data.dicom_io.read_dicom_video`)
before the shared sector crop. Reading ~500k headers takes minutes, so the per-file header facts (frames, rate,
size) are memoised under ``$ECHOBENCH_HOME/data/mimic-iv-echo-headers/``, keyed by the root and the record list.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from echobench import paths
from echobench.atomic import write_text_atomic
from echobench.console import progress_bar
from echobench.data.base import VideoDataset
from echobench.data.dicom_io import dicom_info, read_dicom_video
from echobench.data.patient_hash import hashed_split
from echobench.errors import UserError

COLUMNS = ("subject_id", "study_id", "dicom_filepath")
VAL_SHARE = TEST_SHARE = 0.05
HEADER_COLUMNS = ["dicom_filepath", "num_frames", "fps", "height", "width"]


class MimicIVEcho(VideoDataset):
    """MIMIC-IV-ECHO cines, unlabelled (see the module docstring)."""

    name: ClassVar[str] = "mimic-iv-echo"
    version: ClassVar[str] = "1.0.0"
    layout: ClassVar[str] = (
        "<root>/echo-record-list.csv (subject_id,study_id,acquisition_datetime,dicom_filepath), "
        "<root>/files/pNN/pNNNNNNNN/sNNNNNNNN/*.dcm"
    )
    _ids: frozenset[str] = frozenset()

    def required_files(self) -> list[str]:
        return ["echo-record-list.csv"]

    def label_files(self) -> list[Path]:
        return [self.root / "echo-record-list.csv"]

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        if video_id not in self._ids:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return {}

    def read_frames(self, path: str) -> np.ndarray:
        return read_dicom_video(path)

    def _read_table(self) -> pd.DataFrame:
        listed = self._read_record_list()
        present = listed[[(self.root / f).is_file() for f in listed["dicom_filepath"]]]
        if present.empty:
            first = self.root / listed["dicom_filepath"].iloc[0] if len(listed) else "any DICOM"
            raise UserError(
                f"{self.name} dataset at {self.root}: none of the {len(listed)} DICOMs in echo-record-list.csv is on "
                f"disk (first: {first}); download files/ next to it; expected layout: {self.layout}"
            )
        headers = self._headers(present["dicom_filepath"]).set_index("dicom_filepath")
        merged = present.join(headers, on="dicom_filepath")
        cines = merged[merged["num_frames"] >= 2].reset_index(drop=True)
        subjects = cines["subject_id"].astype(str)
        video_id = [Path(f).stem for f in cines["dicom_filepath"]]
        self._ids = frozenset(video_id)
        return pd.DataFrame(
            {
                "video_id": video_id,
                "path": [str(self.root / f) for f in cines["dicom_filepath"]],
                "split": [hashed_split(s, self.name, val=VAL_SHARE, test=TEST_SHARE) for s in subjects],
                "patient_id": subjects,
                "num_frames": cines["num_frames"],
                "fps": cines["fps"],
                "height": cines["height"],
                "width": cines["width"],
                "ed_frame": -1,
                "es_frame": -1,
            }
        )

    def _read_record_list(self) -> pd.DataFrame:
        records = self.read_csv("echo-record-list.csv", COLUMNS, dtype=str)
        return records[list(COLUMNS)].dropna().drop_duplicates("dicom_filepath").reset_index(drop=True)

    def _headers(self, files: pd.Series) -> pd.DataFrame:
        """Header facts of ``files`` (paths relative to root), read once per (root, record list, file set)."""
        digest = hashlib.sha256(f"{self.root}\0".encode())
        digest.update((self.root / "echo-record-list.csv").read_bytes())
        for rel in files:
            digest.update(f"\0{rel}".encode())
        key = digest.hexdigest()[:16]
        memo = paths.data_dir() / "mimic-iv-echo-headers" / f"{key}.csv"
        if memo.is_file():
            return pd.read_csv(memo, dtype={"dicom_filepath": str})
        rows = []
        with progress_bar() as bar:
            task = bar.add_task("read DICOM headers", total=len(files), info=self.name)
            for rel in files:
                info = dicom_info(self.root / rel)
                rows.append((rel, info.num_frames, info.fps, info.height, info.width))
                bar.advance(task)
        table = pd.DataFrame(rows, columns=HEADER_COLUMNS)
        buffer = io.StringIO()
        table.to_csv(buffer, index=False)
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(memo, buffer.getvalue())
        return table
