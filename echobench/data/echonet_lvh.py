"""EchoNet-LVH format reader (Duffy et al., JAMA Cardiology 2022): PLAX videos with linear LV measurements.

Layout::

    <root>/MeasurementsList.csv     (unnamed index),HashedFileName,Calc,CalcValue,Frame,X1,X2,Y1,Y2,Frames,FPS,
                                    Width,Height,split  -- one row per measurement, several rows per video
    <root>/Batch1/<HashedFileName>.avi ... <root>/Batch4/<HashedFileName>.avi   (native resolution)

``Calc`` names the measurement (IVSd, LVIDd, LVPWd at end-diastole; IVSs, LVIDs, LVPWs at end-systole),
``CalcValue`` is its value in cm, ``Frame`` the frame it was measured on and ``X1,Y1-X2,Y2`` the caliper line in
pixels; ``split`` is train/val/test. Each measurement becomes one label column named in lower case (``ivsd``,
``lvidd``, ...; a video measured twice gets the mean, an unmeasured one NaN). Other ``Calc`` values are ignored.
The frame of the diastolic measurements is the video's ED frame and that of the systolic ones its ES frame (-1
when none was measured). There are no LV tracings and one video per study, so ``patient_id`` is the file name.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from echobench.data.base import VideoDataset
from echobench.errors import UserError

COLUMNS = ("HashedFileName", "Calc", "CalcValue", "Frame", "Frames", "FPS", "Width", "Height", "split")
DIASTOLIC = ("IVSd", "LVIDd", "LVPWd")
SYSTOLIC = ("IVSs", "LVIDs", "LVPWs")
BATCHES = ("Batch1", "Batch2", "Batch3", "Batch4")


class EchoNetLVH(VideoDataset):
    """EchoNet-LVH: parasternal long-axis videos with IVS, LVID and LVPW in diastole and systole."""

    name: ClassVar[str] = "echonet-lvh"
    version: ClassVar[str] = "1.0.0"
    layout: ClassVar[str] = (
        "<root>/MeasurementsList.csv (" + ",".join(COLUMNS) + ", X1,X2,Y1,Y2), "
        "<root>/Batch1..Batch4/<HashedFileName>.avi"
    )
    _ids: frozenset[str] = frozenset()

    def required_files(self) -> list[str]:
        return ["MeasurementsList.csv"]

    def label_files(self) -> list[Path]:
        return [self.root / "MeasurementsList.csv"]

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        """EchoNet-LVH traces calipers, not the LV border: no video has a polygon."""
        if video_id not in self._ids:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return {}

    def _read_table(self) -> pd.DataFrame:
        rows = self._read_measurements()
        videos = rows.groupby("HashedFileName", sort=False)
        meta = videos[["Frames", "FPS", "Width", "Height", "split"]].first()
        names = list(meta.index)
        located = self._locate(names)
        values = rows[rows["Calc"].isin(DIASTOLIC + SYSTOLIC)].pivot_table(
            index="HashedFileName", columns="Calc", values="CalcValue", aggfunc="mean"
        )
        table = pd.DataFrame(
            {
                "video_id": names,
                "path": [str(located[n]) for n in names],
                "split": meta["split"].astype(str).str.strip().str.lower().to_numpy(),
                "patient_id": names,
                "num_frames": self._numeric(meta, "Frames"),
                "fps": self._numeric(meta, "FPS"),
                "height": self._numeric(meta, "Height"),
                "width": self._numeric(meta, "Width"),
                "ed_frame": self._phase_frame(rows, names, DIASTOLIC),
                "es_frame": self._phase_frame(rows, names, SYSTOLIC),
            }
        )
        for calc in DIASTOLIC + SYSTOLIC:
            column = values[calc] if calc in values.columns else pd.Series(dtype=float)
            table[calc.lower()] = column.reindex(names).to_numpy(np.float64)
        self._ids = frozenset(names)
        return table

    def _read_measurements(self) -> pd.DataFrame:
        rows = self.read_csv("MeasurementsList.csv", COLUMNS, dtype={"HashedFileName": str})
        rows["HashedFileName"] = rows["HashedFileName"].astype(str).str.strip().str.removesuffix(".avi")
        rows["CalcValue"] = pd.to_numeric(rows["CalcValue"], errors="coerce")
        return rows

    def _locate(self, names: list[str]) -> dict[str, Path]:
        """Each video's file in whichever batch folder holds it (the release spreads videos over four)."""
        found: dict[str, Path] = {}
        for batch in BATCHES:
            folder = self.root / batch
            if folder.is_dir():
                found.update({p.stem: p for p in folder.glob("*.avi")})
        missing = [n for n in names if n not in found]
        if missing:
            raise UserError(
                f"{self.name} dataset at {self.root}: video {missing[0]}.avi is listed in MeasurementsList.csv but is "
                f"in none of {', '.join(BATCHES)} ({len(missing)} missing in all); expected layout: {self.layout}"
            )
        return found

    def _numeric(self, meta: pd.DataFrame, column: str) -> np.ndarray:
        values = pd.to_numeric(meta[column], errors="coerce")
        if values.isna().any():
            raise UserError(
                f"{self.root / 'MeasurementsList.csv'}: {column} of {values.index[values.isna()][0]!r} is not a "
                "number; fix it"
            )
        return values.to_numpy()

    @staticmethod
    def _phase_frame(rows: pd.DataFrame, names: list[str], calcs: tuple[str, ...]) -> np.ndarray:
        """The frame a video's measurements of one phase were taken on (the most common one; -1 when none)."""
        frames = pd.to_numeric(rows["Frame"], errors="coerce")
        phase = rows.assign(Frame=frames)[rows["Calc"].isin(calcs) & frames.notna()]
        chosen = phase.groupby("HashedFileName")["Frame"].agg(lambda f: f.mode().iloc[0])
        return chosen.reindex(names).fillna(-1).to_numpy(np.int64)
