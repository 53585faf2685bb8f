"""The dataset contract: a table with one row per video, LV tracings, and content/split hashes.

Every dataset format (EchoNet-Dynamic, SynthEcho, ...) subclasses :class:`VideoDataset`; the decode cache, the
clip loaders and the protocols only read ``table``, ``tracings`` and the hashes.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from echobench.data.geometry import polygon_mask
from echobench.data.video_io import read_video_gray
from echobench.errors import UserError

SPLITS = ("train", "val", "test")

#: Set by :func:`collect_problems`: constructors then record table faults here instead of raising.
_PROBLEMS: ContextVar[list[str] | None] = ContextVar("echobench_dataset_problems", default=None)


@contextlib.contextmanager
def collect_problems() -> Iterator[list[str]]:
    """Inside the block, :class:`VideoDataset` constructors append the faults they would refuse (listed videos
    that are missing, unknown splits, duplicate ids, non-numeric labels) to the yielded list and keep going, so
    ``echobench data verify`` can report every fault of a folder at once. Missing required files still raise:
    without them there is no table to check."""
    problems: list[str] = []
    token = _PROBLEMS.set(problems)
    try:
        yield problems
    finally:
        _PROBLEMS.reset(token)


def _refuse(message: str) -> None:
    problems = _PROBLEMS.get()
    if problems is None:
        raise UserError(message)
    problems.append(message)


#: Columns every dataset table has; every other column is a label (float, NaN when missing).
CORE_COLUMNS: dict[str, type] = {
    "video_id": str,
    "path": str,
    "split": str,
    "patient_id": str,
    "num_frames": int,
    "fps": float,
    "height": int,
    "width": int,
    "ed_frame": int,
    "es_frame": int,
}


class VideoDataset(abc.ABC):
    """A folder of videos with per-video metadata and labels.

    Subclasses set ``name``, ``version`` and ``layout`` (a one-line description of the expected files, used in
    error messages) and implement :meth:`required_files`, :meth:`label_files`, :meth:`_read_table` and
    :meth:`tracings`. The constructor validates the layout and that every listed video exists.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    layout: ClassVar[str]

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self._content_hash: str | None = None
        for rel in self.required_files():
            if not (self.root / rel).is_file():
                raise UserError(
                    f"{self.name} dataset at {self.root}: missing {self.root / rel}; expected layout: {self.layout}"
                )
        self.table: pd.DataFrame = _normalise_table(self._read_table(), self.name, self.root)
        missing = [p for p in self.table["path"] if not Path(p).is_file()]
        if missing:
            _refuse(
                f"{self.name} dataset at {self.root}: video {missing[0]} is listed but missing "
                f"({len(missing)} missing in all); restore it or remove its rows; expected layout: {self.layout}"
            )

    # -- what a format provides -------------------------------------------------------------------------------

    @abc.abstractmethod
    def required_files(self) -> list[str]:
        """Paths (relative to ``root``) that must exist for the layout to be valid."""

    @abc.abstractmethod
    def label_files(self) -> list[Path]:
        """Existing metadata/label files whose bytes define the dataset's content (for :meth:`content_hash`)."""

    @abc.abstractmethod
    def _read_table(self) -> pd.DataFrame:
        """The raw table: the :data:`CORE_COLUMNS` plus label columns; normalised by the base class."""

    @abc.abstractmethod
    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        """Traced frames of a video: frame index -> LV polygon ``(P, 2)`` float ``(x, y)`` in pixels."""

    def video_files(self) -> list[Path] | None:
        """Every video file of the format under ``root``, listed in the table or not (``data verify`` reports the
        unlisted ones as extra files); ``None`` when the format cannot tell which files are videos."""
        return None

    def read_frames(self, path: str) -> np.ndarray:
        """Grey frames ``(T, H, W)`` uint8 of the video at ``path`` (a table ``path``); formats other than video
        files (NIfTI, MHD, DICOM) override this. Raises :class:`UserError` naming the file when it is unreadable."""
        return read_video_gray(path)

    #: Names of the label-map values 1, 2, ... of :meth:`masks` (0 is background).
    mask_classes: ClassVar[tuple[str, ...]] = ("lv",)

    def masks(self, video_id: str) -> dict[int, np.ndarray]:
        """Segmentation label maps of a video: frame index -> ``(height, width)`` uint8 at the source resolution.

        Value ``i`` (1-based) is class ``mask_classes[i - 1]``, 0 is background. The default rasterises the LV
        tracings; datasets that ship label maps (CAMUS, HMC-QU) override this.
        """
        row = self.table.index[self.table["video_id"] == video_id]
        if len(row) == 0:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        height, width = (int(self.table.at[row[0], c]) for c in ("height", "width"))
        return {
            frame: polygon_mask(polygon, height, width).astype(np.uint8)
            for frame, polygon in self.tracings(video_id).items()
        }

    def read_csv(self, rel: str, columns: tuple[str, ...], dtype: Any = None) -> pd.DataFrame:
        """A label file under ``root`` with the ``columns`` it must have; a :class:`UserError` naming the file when
        it cannot be parsed or lacks a column."""
        path = self.root / rel
        try:
            frame = pd.read_csv(path, dtype=dtype)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise UserError(f"cannot parse {path} ({err}); expected layout: {self.layout}") from err
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise UserError(
                f"{path} lacks columns {absent}; it needs {', '.join(columns)} (expected layout: {self.layout})"
            )
        return frame

    # -- shared behaviour ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.table)

    @property
    def label_columns(self) -> list[str]:
        """Label columns of ``table`` (everything that is not a core column), in table order."""
        return [c for c in self.table.columns if c not in CORE_COLUMNS]

    def content_hash(self) -> str:
        """16 hex chars: sha256 over the label files' bytes and each video's (file name, size).

        Sizes rather than video bytes keep this cheap on 10k videos; a re-encoded or replaced video almost always
        changes size. Computed once per instance.
        """
        if self._content_hash is None:
            self._content_hash = self._compute_content_hash()
        return self._content_hash

    def _compute_content_hash(self) -> str:
        h = hashlib.sha256()
        for f in self.label_files():
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        for p in sorted(self.table["path"]):
            path = Path(p)
            h.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        return h.hexdigest()[:16]

    def split_hash(self, split: str) -> str:
        """16 hex chars: sha256 over the sorted video ids of ``split`` and their labels.

        Memoised per table object, because every embedding-cache lookup needs it (a label sweep makes dozens).
        """
        key = (split, id(self.table), len(self.table))
        memo: dict[tuple[str, int, int], str] = self.__dict__.setdefault("_split_hashes", {})
        if key not in memo:
            memo[key] = self._compute_split_hash(split)
        return memo[key]

    def _compute_split_hash(self, split: str) -> str:
        table = self.split_table(split).sort_values("video_id")
        rows = [
            [vid, [None if math.isnan(v) else float(v) for v in labels]]
            for vid, labels in zip(table["video_id"], table[self.label_columns].to_numpy(float), strict=True)
        ]
        payload = json.dumps({"labels": self.label_columns, "rows": rows}, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def split_table(self, split: str) -> pd.DataFrame:
        """Rows of one split, re-indexed 0..n-1."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return self.table[self.table["split"] == split].reset_index(drop=True)


def _normalise_table(table: pd.DataFrame, name: str, root: Path) -> pd.DataFrame:
    """Check the core columns and give every column its contract dtype (labels become float)."""
    absent = [c for c in CORE_COLUMNS if c not in table.columns]
    if absent:
        raise ValueError(f"{name} table lacks core columns {absent}")
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        _refuse(f"{name} dataset at {root}: unknown split values {bad}; use TRAIN, VAL or TEST")
    duplicated = table["video_id"][table["video_id"].duplicated()]
    if len(duplicated):
        _refuse(f"{name} dataset at {root}: video {duplicated.iloc[0]!r} is listed twice; keep one row")
    out = pd.DataFrame(index=pd.RangeIndex(len(table)))
    for col, kind in CORE_COLUMNS.items():
        out[col] = table[col].to_numpy().astype(kind)
    for col in table.columns:
        if col in CORE_COLUMNS:
            continue
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
        unparsed = np.isnan(values) & table[col].notna().to_numpy() & (table[col].astype(str).str.strip() != "")
        if unparsed.any():
            example = table[col].to_numpy()[unparsed][0]
            _refuse(
                f"{name} dataset at {root}: label column {col!r} has non-numeric value {example!r}; "
                "labels must be numbers (leave missing ones empty)"
            )
        out[col] = values
    return out
