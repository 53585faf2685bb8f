"""``echobench data verify``: check a dataset folder against its format before any run uses it.

Works for every registered dataset through the :class:`~echobench.data.base.VideoDataset` contract: the table is
built with :func:`~echobench.data.base.collect_problems`, so a folder the constructor would refuse (missing videos,
duplicate ids, ...) is still checked in full and the refusal becomes one finding among the others. Label ranges are
known per label name (``ef`` in percent, volumes non-negative, binary ``mi``, ...), whatever the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from echobench.console import progress_bar
from echobench.data.base import SPLITS, VideoDataset, collect_problems
from echobench.errors import UserError

Severity = Literal["ok", "warning", "fault"]

#: Allowed closed range of each known label column.
LABEL_RANGES: dict[str, tuple[float, float]] = {
    "ef": (0.0, 100.0),
    "esv": (0.0, math.inf),
    "edv": (0.0, math.inf),
    "mi": (0.0, 1.0),
    "mi_segments": (0.0, 6.0),
    "quality": (0.0, 2.0),
}
#: Names listed in one finding's detail before "and N more".
SHOWN = 5


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    detail: str


@dataclass
class Report:
    dataset: str
    root: Path
    findings: list[Finding] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)

    @property
    def faults(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "fault"]

    def add(self, check: str, bad: list[str], what: str, ok: str, severity: Severity = "fault") -> None:
        """One finding: ``ok`` when ``bad`` is empty, else ``what`` followed by the first names of ``bad``."""
        if not bad:
            self.findings.append(Finding(check, "ok", ok))
            return
        more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        self.findings.append(Finding(check, severity, f"{len(bad)} {what}: {', '.join(bad[:SHOWN])}{more}"))


def verify(dataset_cls: type[VideoDataset], root: Path, progress: bool = True) -> Report:
    """Every check on the folder ``root`` read as ``dataset_cls``; decodes each listed video once."""
    root = Path(root).expanduser()
    report = Report(dataset=dataset_cls.name, root=root)
    if not root.is_dir():
        report.findings.append(Finding("layout", "fault", f"{root} is not a folder"))
        return report
    with collect_problems() as problems:
        try:
            dataset = dataset_cls(root)
        except UserError as err:
            report.findings.append(Finding("layout", "fault", str(err)))
            return report
    report.findings.append(Finding("layout", "ok", dataset.layout))
    report.add("run would accept", problems, "refusals by the dataset reader", "the reader accepts the folder")
    table = dataset.table
    _files(report, dataset)
    _decoding(report, dataset, progress)
    _labels(report, dataset)
    _splits(report, table)
    return report


def _files(report: Report, dataset: VideoDataset) -> None:
    listed = {Path(p) for p in dataset.table["path"]}
    missing = sorted(p.name for p in listed if not p.is_file())
    report.add("missing files", missing, "listed videos are missing", f"all {len(listed)} listed videos exist")
    present = dataset.video_files()
    if present is None:
        report.findings.append(Finding("extra files", "ok", "not checked: the format cannot tell videos apart"))
        return
    extra = sorted(p.name for p in set(present) - listed)
    report.add("extra files", extra, "videos are not listed", "every video file is listed", severity="warning")


def _decoding(report: Report, dataset: VideoDataset, progress: bool) -> None:
    unreadable, short, longer = [], [], []
    table = dataset.table
    existing = table[[Path(p).is_file() for p in table["path"]]]
    for video_id, listed, decoded in _decode_each(dataset, existing, progress):
        if isinstance(decoded, str):
            unreadable.append(f"{video_id} [{decoded}]")
        elif decoded < listed:
            short.append(f"{video_id} ({decoded} of {listed})")
        elif decoded > listed:
            longer.append(f"{video_id} ({decoded}, listed {listed})")
    report.add("videos decode", unreadable, "videos are unreadable", f"{len(existing)} videos decode")
    report.add("frame counts", short, "videos decode fewer frames than listed (truncated?)", "no video is short")
    report.add("longer videos", longer, "videos hold more frames than listed", "none", severity="warning")


def _decode_each(dataset: VideoDataset, table: pd.DataFrame, progress: bool) -> Iterator[tuple[str, int, int | str]]:
    """``(video_id, listed frames, decoded frames or the error)`` per row, with a progress bar."""
    bar = progress_bar()
    bar.disable = not progress
    with bar:
        task = bar.add_task(f"decode {dataset.name}", total=len(table), info="verify")
        for video_id, path, listed in zip(table["video_id"], table["path"], table["num_frames"], strict=True):
            try:
                decoded: int | str = len(dataset.read_frames(path))
            except UserError as err:
                decoded = str(err)
            except Exception as err:  # any decoder failure is a finding, never a crash of the report
                decoded = f"{type(err).__name__}: {err}"
            yield str(video_id), int(listed), decoded
            bar.advance(task)


def _labels(report: Report, dataset: VideoDataset) -> None:
    table = dataset.table
    ids = table["video_id"].astype(str)
    for column in dataset.label_columns:
        values = table[column].to_numpy(np.float64)
        nan = list(ids[np.isnan(values)])
        # As in run: a video without this label is left out of the tasks that need it; only a column with no
        # value at all makes those tasks impossible.
        report.add(
            f"{column} present",
            nan,
            f"videos lack {column} (left out of tasks on {column})",
            f"every video has {column}",
            severity="fault" if len(nan) == len(values) else "warning",
        )
        if column in LABEL_RANGES:
            low, high = LABEL_RANGES[column]
            outside = ~np.isnan(values) & ((values < low) | (values > high))
            bad = [f"{v} ({x:g})" for v, x in zip(ids[outside], values[outside], strict=True)]
            bounds = f"[{low:g}, {high:g}]"
            report.add(f"{column} range", bad, f"{column} values outside {bounds}", f"every {column} in {bounds}")
    frames = table["num_frames"].to_numpy()
    beyond = [
        f"{v} ({c} {x} of {n})"
        for c in ("ed_frame", "es_frame")
        for v, x, n in zip(ids, table[c], frames, strict=True)
        if x >= n > 0
    ]
    report.add("ed/es frames", beyond, "ED/ES frames lie past the video's end", "inside their videos")
    duplicated = sorted(set(ids[ids.duplicated()]))
    report.add("duplicate ids", duplicated, "video ids are listed more than once", "every video listed once")


def _splits(report: Report, table: pd.DataFrame) -> None:
    counts = table["split"].value_counts()
    names = [*SPLITS, *sorted(set(counts.index) - set(SPLITS))]
    report.split_counts = {split: int(counts.get(split, 0)) for split in names}
    summary = ", ".join(f"{s} {n}" for s, n in report.split_counts.items())
    empty = [s for s in SPLITS if report.split_counts[s] == 0]
    report.add("splits", empty, "splits are empty", summary)
    per_patient = table.groupby("patient_id")["split"].agg(lambda s: sorted(set(s)))
    straddling = [f"{p} ({'/'.join(s)})" for p, s in per_patient.items() if len(s) > 1]
    report.add("patient overlap", straddling, "patients appear in several splits", "no patient spans two splits")
