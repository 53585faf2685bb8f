"""A generic folder of videos with a label table, for private data that follows no public release.

Layout::

    <root>/labels.csv     FileName,Split[,PatientID][,EDFrame,ESFrame][,<label>...]
    <root>/<FileName>     each video, FileName being its path relative to <root> (e.g. ``videos/a.mp4``)

``Split`` is train/val/test (any case). ``PatientID`` groups videos of one patient (default: one patient per
video); ``EDFrame``/``ESFrame`` give end-diastole/end-systole frame indices where known. Every other column is a
numeric label named in lower case (leave missing values empty); e.g. a column ``EF`` makes the ``ef`` tasks work.
Videos are in any container PyAV reads (AVI, MP4, ...); frame count, rate and size come from their headers. There
are no tracings.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import ClassVar

import numpy as np
import pandas as pd

from echobench.data.base import CORE_COLUMNS, VideoDataset
from echobench.data.video_io import probe_video
from echobench.errors import UserError

#: Columns with a meaning beyond "label": they fill core columns.
SPECIAL = {"PatientID": "patient_id", "EDFrame": "ed_frame", "ESFrame": "es_frame"}


class VideoFolder(VideoDataset):
    """Any folder of videos described by ``labels.csv`` (see the module docstring)."""

    name: ClassVar[str] = "videofolder"
    version: ClassVar[str] = "1.0.0"
    layout: ClassVar[str] = (
        "<root>/labels.csv (FileName,Split[,PatientID][,EDFrame,ESFrame][,numeric labels...]), "
        "<root>/<FileName> (video path relative to <root>)"
    )
    _ids: frozenset[str] = frozenset()

    def required_files(self) -> list[str]:
        return ["labels.csv"]

    def label_files(self) -> list[Path]:
        return [self.root / "labels.csv"]

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        if video_id not in self._ids:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return {}

    def _read_table(self) -> pd.DataFrame:
        labels = self.read_csv(
            "labels.csv", ("FileName", "Split"), dtype={"FileName": str, "PatientID": str, "Split": str}
        )
        files = labels["FileName"].astype(str).str.strip()
        video_id = [str(PurePosixPath(f).with_suffix("")) for f in files]
        paths = [self.root / f for f in files]
        info = [probe_video(p) if p.is_file() else None for p in paths]
        table = pd.DataFrame(
            {
                "video_id": video_id,
                "path": [str(p) for p in paths],
                "split": labels["Split"].astype(str).str.strip().str.lower(),
                "patient_id": video_id,
                # A missing video keeps placeholder metadata; the base class then reports it by name.
                "num_frames": [i.num_frames if i else 0 for i in info],
                "fps": [i.fps if i else float("nan") for i in info],
                "height": [i.height if i else 0 for i in info],
                "width": [i.width if i else 0 for i in info],
                "ed_frame": -1,
                "es_frame": -1,
            }
        )
        for column in labels.columns.drop(["FileName", "Split"]):
            values = labels[column]
            if column in SPECIAL:
                known = values.notna().to_numpy()
                target = SPECIAL[column]
                table.loc[known, target] = values[known].to_numpy().astype(str if target == "patient_id" else np.int64)
                continue
            label = column.lower()
            if label in CORE_COLUMNS or label in table.columns:
                raise UserError(
                    f"{self.root / 'labels.csv'}: label column {column!r} clashes with a reserved name; rename it"
                )
            table[label] = values.to_numpy()
        self._ids = frozenset(video_id)
        return table
