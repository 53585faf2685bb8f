"""EchoNet-Dynamic format reader (also the on-disk format SynthEcho writes).

Layout::

    <root>/FileList.csv         FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split
                                (FileName without extension; Split TRAIN/VAL/TEST)
    <root>/VolumeTracings.csv   FileName,X1,Y1,X2,Y2,Frame (FileName with .avi)
    <root>/Videos/<FileName>.avi
    <root>/FileListExtra.csv    optional: FileName plus any columns (PatientID, MI, EDFrame, ESFrame, ...)

Per traced frame the first VolumeTracings row is the LV long axis and the following rows are border chords
``(X1, Y1)-(X2, Y2)``; the LV polygon is the X1,Y1 points followed by the reversed X2,Y2 points (the long axis
excluded). Of the traced frames the one with the larger LV area is end-diastole (ED), the smaller end-systole (ES).
Videos with fewer than two traced frames (a few in the real data) get ED/ES = -1.

FileListExtra.csv: ``PatientID`` fills ``patient_id`` (default: the video id, as EchoNet-Dynamic has one video per
patient); ``EDFrame``/``ESFrame``, where given, override the tracing-derived ED/ES frames (they are explicit);
every other column becomes a lowercase float label column.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from echobench.data.base import VideoDataset
from echobench.data.geometry import lv_area
from echobench.errors import UserError

FILE_LIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
#: FileListExtra.csv columns with a meaning beyond "label": they fill core columns instead.
EXTRA_CORE_COLUMNS = {"PatientID": "patient_id", "EDFrame": "ed_frame", "ESFrame": "es_frame"}


def tracing_polygon(chords: np.ndarray) -> np.ndarray:
    """LV polygon ``(P, 2)`` from one traced frame's rows ``(K, 4)`` of ``X1, Y1, X2, Y2`` (row 0 = long axis)."""
    border = np.asarray(chords, dtype=np.float64)[1:]
    return np.concatenate([border[:, 0:2], border[::-1, 2:4]])


class EchoNetDynamic(VideoDataset):
    """EchoNet-Dynamic (Ouyang et al., Nature 2020): apical-4-chamber videos with EF/ESV/EDV and LV tracings."""

    name: ClassVar[str] = "echonet-dynamic"
    version: ClassVar[str] = "1.0.0"
    layout: ClassVar[str] = (
        "<root>/FileList.csv ("
        + ",".join(FILE_LIST_COLUMNS)
        + "), <root>/VolumeTracings.csv ("
        + ",".join(TRACING_COLUMNS)
        + "), <root>/Videos/<FileName>.avi, optional <root>/FileListExtra.csv"
    )

    def __init__(self, root: Path) -> None:
        self._tracings: dict[str, dict[int, np.ndarray]] = {}
        self._table_ids: frozenset[str] = frozenset()
        super().__init__(root)

    def required_files(self) -> list[str]:
        return ["FileList.csv", "VolumeTracings.csv"]

    def label_files(self) -> list[Path]:
        files = [self.root / "FileList.csv", self.root / "VolumeTracings.csv", self.root / "FileListExtra.csv"]
        return [f for f in files if f.is_file()]

    def video_files(self) -> list[Path]:
        return sorted((self.root / "Videos").glob("*.avi"))

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        """Traced frames of a video (empty when it has none; a few real EchoNet videos have none)."""
        if video_id not in self._table_ids:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return dict(self._tracings.get(video_id, {}))

    def _read_table(self) -> pd.DataFrame:
        files = self._read_csv("FileList.csv", FILE_LIST_COLUMNS)
        video_id = files["FileName"].astype(str).str.strip().str.removesuffix(".avi")
        split = files["Split"].astype(str).str.strip().str.lower()
        table = pd.DataFrame(
            {
                "video_id": video_id,
                "path": [str(self.root / "Videos" / f"{v}.avi") for v in video_id],
                "split": split,
                "patient_id": video_id,
                "num_frames": self._numeric(files, "NumberOfFrames"),
                "fps": self._numeric(files, "FPS"),
                "height": self._numeric(files, "FrameHeight"),
                "width": self._numeric(files, "FrameWidth"),
                "ed_frame": -1,
                "es_frame": -1,
                # Labels stay as written: the base class refuses non-numeric ones instead of reading them as missing.
                "ef": files["EF"],
                "esv": files["ESV"],
                "edv": files["EDV"],
            }
        )
        self._table_ids = frozenset(video_id)
        self._tracings = self._read_tracings()
        ed_es = {vid: _ed_es(frames) for vid, frames in self._tracings.items()}
        table["ed_frame"] = [ed_es.get(v, (-1, -1))[0] for v in video_id]
        table["es_frame"] = [ed_es.get(v, (-1, -1))[1] for v in video_id]
        extra = self.root / "FileListExtra.csv"
        return self._merge_extra(table) if extra.is_file() else table

    def _read_csv(self, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
        # Names and patient ids are text even when they look numeric ("0001" must not become 1).
        return self.read_csv(name, columns, dtype={"FileName": str, "PatientID": str})

    def _numeric(self, files: pd.DataFrame, column: str) -> pd.Series:
        values = pd.to_numeric(files[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise UserError(
                f"{self.root / 'FileList.csv'}: {column} of {files['FileName'].iloc[row]!r} is not a number; fix it"
            )
        return values

    def _read_tracings(self) -> dict[str, dict[int, np.ndarray]]:
        traces = self._read_csv("VolumeTracings.csv", TRACING_COLUMNS)
        traces["FileName"] = traces["FileName"].astype(str).str.strip().str.removesuffix(".avi")
        traces = traces[traces["FileName"].isin(self._table_ids)]
        keys = traces["FileName"] + "\0" + traces["Frame"].astype(str)
        codes, _ = pd.factorize(keys)
        # A stable sort keeps the file's row order inside each (video, frame) group: row 0 is the long axis.
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        chords = traces[["X1", "Y1", "X2", "Y2"]].to_numpy(np.float64)[order]
        videos = traces["FileName"].to_numpy()[order]
        frames = traces["Frame"].to_numpy()[order]
        out: dict[str, dict[int, np.ndarray]] = {}
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(order)], strict=True):
            if stop - start >= 2:
                out.setdefault(str(videos[start]), {})[int(frames[start])] = tracing_polygon(chords[start:stop])
        return out

    def _merge_extra(self, table: pd.DataFrame) -> pd.DataFrame:
        path = self.root / "FileListExtra.csv"
        extra = self._read_csv("FileListExtra.csv", ("FileName",))
        extra["FileName"] = extra["FileName"].astype(str).str.strip().str.removesuffix(".avi")
        if extra["FileName"].duplicated().any():
            raise UserError(f"{path}: {extra['FileName'][extra['FileName'].duplicated()].iloc[0]!r} is listed twice")
        extra = extra.set_index("FileName").reindex(table["video_id"])
        for column in extra.columns:
            values = extra[column].to_numpy()
            if column in EXTRA_CORE_COLUMNS:
                target = EXTRA_CORE_COLUMNS[column]
                known = pd.notna(values)
                table.loc[known, target] = values[known].astype(str if target == "patient_id" else np.int64)
                continue
            label = column.lower()
            if label in table.columns:
                raise UserError(f"{path}: column {column!r} clashes with FileList.csv's {label!r}; rename it")
            table[label] = values
        return table


def _ed_es(frames: dict[int, np.ndarray]) -> tuple[int, int]:
    """(ED, ES) = (larger-area, smaller-area) traced frame; (-1, -1) with fewer than two traced frames."""
    if len(frames) < 2:
        return -1, -1
    areas = {frame: lv_area(polygon) for frame, polygon in frames.items()}
    return max(areas, key=areas.__getitem__), min(areas, key=areas.__getitem__)
