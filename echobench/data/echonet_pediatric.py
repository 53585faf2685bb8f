"""EchoNet-Pediatric format reader (Reddy et al., JASE 2023): paediatric A4C and PSAX videos with EF and LV tracings.

Layout, one folder per view::

    <root>/A4C/FileList.csv         FileName,EF,Sex,Age,Weight,Height,Split  (Split = fold number 0-9)
    <root>/A4C/VolumeTracings.csv   FileName,X,Y,Frame  (one row per polygon point)
    <root>/A4C/Videos/<FileName>.avi
    <root>/PSAX/...                 the same three for the parasternal short-axis view

Views: ``echonet-pediatric`` reads both views into one table, ``echonet-pediatric-a4c`` and
``echonet-pediatric-psax`` one each. Video ids are ``<view>/<FileName>`` (a name may occur in both views), and the
label column ``psax`` is 1 for PSAX videos and 0 for A4C ones, so a two-view table can be filtered by view.

Splits: the release assigns each video a cross-validation fold by patient; folds 0-7 are training, 8 validation and
9 test by default (the constructor takes other fold sets; videos of a fold in none of them are left out). The file
list has no patient column, so ``patient_id`` is the file name.

Tracings: the rows of one (FileName, Frame) are the LV border points in order. ``Frame`` is ``No Systolic`` /
``No Diastolic`` where the tracer found no such frame; those rows locate no frame and are skipped. Of the traced
frames the larger LV area is end-diastole, the smaller end-systole, as in EchoNet-Dynamic.

Labels: ``ef`` (percent), ``male`` (1 = M, 0 = F), ``age_years``, ``weight_kg``, ``height_cm`` and ``psax``.
Frame count, rate and size are read from each video's header (the file list does not give them).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from echobench.data.base import VideoDataset
from echobench.data.geometry import ed_es_frames
from echobench.data.video_io import probe_video
from echobench.errors import UserError

FILE_LIST_COLUMNS = ("FileName", "EF", "Sex", "Age", "Weight", "Height", "Split")
TRACING_COLUMNS = ("FileName", "X", "Y", "Frame")
VIEWS = ("A4C", "PSAX")
FOLDS = range(10)


def _layout(views: tuple[str, ...]) -> str:
    return ", ".join(
        f"<root>/{v}/FileList.csv ({','.join(FILE_LIST_COLUMNS)}; Split = fold 0-9), "
        f"<root>/{v}/VolumeTracings.csv ({','.join(TRACING_COLUMNS)}), <root>/{v}/Videos/<FileName>.avi"
        for v in views
    )


def tracing_polygons(traces: pd.DataFrame) -> dict[str, dict[int, np.ndarray]]:
    """FileName (without ``.avi``) -> frame -> LV polygon ``(P, 2)`` from ``FileName,X,Y,Frame`` point rows.

    Rows keep their file order within a (FileName, Frame) group; rows whose Frame is not a frame number
    (``No Systolic``, ``No Diastolic``) and groups of fewer than three points (no area) are skipped.
    """
    frame = pd.to_numeric(traces["Frame"], errors="coerce")
    usable = traces.assign(Frame=frame)[frame.notna() & (frame >= 0) & (frame == frame.round())]
    usable = usable.assign(FileName=usable["FileName"].astype(str).str.strip().str.removesuffix(".avi"))
    out: dict[str, dict[int, np.ndarray]] = {}
    for (name, index), group in usable.groupby(["FileName", "Frame"], sort=False):
        points = group[["X", "Y"]].to_numpy(np.float64)
        if len(points) >= 3 and np.isfinite(points).all():
            out.setdefault(str(name), {})[int(index)] = points
    return out


class EchoNetPediatric(VideoDataset):
    """EchoNet-Pediatric, both views (see the module docstring for layout, splits and labels)."""

    name: ClassVar[str] = "echonet-pediatric"
    version: ClassVar[str] = "1.0.0"
    views: ClassVar[tuple[str, ...]] = VIEWS
    layout: ClassVar[str] = _layout(VIEWS)

    def __init__(
        self,
        root: Path,
        train_folds: Iterable[int] = range(8),
        val_folds: Iterable[int] = (8,),
        test_folds: Iterable[int] = (9,),
    ) -> None:
        self._fold_split: dict[int, str] = {}
        for split, folds in (("train", train_folds), ("val", val_folds), ("test", test_folds)):
            for fold in folds:
                if fold not in FOLDS or fold in self._fold_split:
                    raise ValueError(f"fold {fold!r} must be one of 0-9 and belong to one split only")
                self._fold_split[int(fold)] = split
        self._tracings: dict[str, dict[int, np.ndarray]] = {}
        self._ids: frozenset[str] = frozenset()
        super().__init__(root)

    def required_files(self) -> list[str]:
        return [f"{view}/{name}" for view in self.views for name in ("FileList.csv", "VolumeTracings.csv")]

    def label_files(self) -> list[Path]:
        return [self.root / rel for rel in self.required_files()]

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        if video_id not in self._ids:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return dict(self._tracings.get(video_id, {}))

    def _read_table(self) -> pd.DataFrame:
        tables = [self._read_view(view) for view in self.views]
        table = pd.concat(tables, ignore_index=True)
        self._ids = frozenset(table["video_id"])
        return table

    def _read_view(self, view: str) -> pd.DataFrame:
        files = self.read_csv(f"{view}/FileList.csv", FILE_LIST_COLUMNS, dtype={"FileName": str})
        names = files["FileName"].astype(str).str.strip().str.removesuffix(".avi")
        fold = pd.to_numeric(files["Split"], errors="coerce")
        bad = ~fold.isin(list(FOLDS))
        if bad.any():
            raise UserError(
                f"{self.root / view / 'FileList.csv'}: Split of {names[bad].iloc[0]!r} is "
                f"{files['Split'][bad].iloc[0]!r}; EchoNet-Pediatric splits are fold numbers 0-9"
            )
        split = fold.astype(int).map(self._fold_split)
        kept = split.notna().to_numpy()
        files, names, split = files[kept], names[kept], split[kept]
        paths = [self.root / view / "Videos" / f"{n}.avi" for n in names]
        info = [probe_video(p) if p.is_file() else None for p in paths]
        video_id = [f"{view}/{n}" for n in names]
        polygons = tracing_polygons(
            self.read_csv(f"{view}/VolumeTracings.csv", TRACING_COLUMNS, dtype={"FileName": str})
        )
        for vid, name in zip(video_id, names, strict=True):
            if name in polygons:
                self._tracings[vid] = polygons[name]
        ed_es = [ed_es_frames(self._tracings.get(v, {})) for v in video_id]
        sex = files["Sex"].astype(str).str.strip().str.upper()
        return pd.DataFrame(
            {
                "video_id": video_id,
                "path": [str(p) for p in paths],
                "split": split.to_numpy(),
                "patient_id": names.to_numpy(),
                # A missing video keeps placeholder metadata; the base class then reports it by name.
                "num_frames": [i.num_frames if i else 0 for i in info],
                "fps": [i.fps if i else float("nan") for i in info],
                "height": [i.height if i else 0 for i in info],
                "width": [i.width if i else 0 for i in info],
                "ed_frame": [e for e, _ in ed_es],
                "es_frame": [s for _, s in ed_es],
                "ef": files["EF"].to_numpy(),
                "male": np.where(sex == "M", 1.0, np.where(sex == "F", 0.0, np.nan)),
                "age_years": pd.to_numeric(files["Age"], errors="coerce").to_numpy(),
                "weight_kg": pd.to_numeric(files["Weight"], errors="coerce").to_numpy(),
                "height_cm": pd.to_numeric(files["Height"], errors="coerce").to_numpy(),
                "psax": float(view == "PSAX"),
            }
        )


class EchoNetPediatricA4C(EchoNetPediatric):
    """EchoNet-Pediatric, apical-4-chamber videos only."""

    name: ClassVar[str] = "echonet-pediatric-a4c"
    views: ClassVar[tuple[str, ...]] = ("A4C",)
    layout: ClassVar[str] = _layout(("A4C",))


class EchoNetPediatricPSAX(EchoNetPediatric):
    """EchoNet-Pediatric, parasternal short-axis videos only."""

    name: ClassVar[str] = "echonet-pediatric-psax"
    views: ClassVar[tuple[str, ...]] = ("PSAX",)
    layout: ClassVar[str] = _layout(("PSAX",))
