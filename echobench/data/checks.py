"""The checks ``echobench data verify`` makes, applied by ``echobench run`` to the rows it uses.

Before any model is trained: the task's labels must lie in their declared range (:data:`LABEL_RANGES`), every video
must decode as many frames as the file list says (fewer means a truncated file), and no patient may appear in two
splits. A fault is a one-line error; with ``--skip-bad`` bad videos are left out of the evaluation instead (counted
under the result table), and ``--allow-patient-overlap`` accepts patients in several splits (flagged in the result).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from echobench.config import did_you_mean
from echobench.context import ProtocolContext
from echobench.data.base import SPLITS, VideoDataset
from echobench.data.decode_cache import DecodeCache
from echobench.data.tasks import Task
from echobench.data.verify import LABEL_RANGES, SHOWN
from echobench.errors import UserError


@dataclass
class RowChecks:
    """What the checks found: videos left out (id -> reason), patients accepted in several splits, warnings."""

    dataset: str = "dataset"
    skip_bad: bool = False
    excluded: dict[str, str] = field(default_factory=dict)
    overlapping_patients: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def check_videos(self, table: pd.DataFrame, cache: DecodeCache) -> None:
        """Refuse (or, with ``skip_bad``, exclude) videos that decode fewer frames than listed."""
        self.exclude(_truncated(table, cache))

    def exclude(self, bad: dict[str, str]) -> None:
        if bad and not self.skip_bad:
            first = next(iter(bad))
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise UserError(
                f"{len(bad)} videos of {self.dataset} are bad: {first} {bad[first]}{more}; fix them (echobench data "
                "verify lists all), or rerun with --skip-bad to leave them out"
            )
        self.excluded.update(bad)

    def restrict(self, context: ProtocolContext) -> ProtocolContext:
        """``context`` whose splits leave out the excluded videos."""
        if not self.excluded:
            return context
        tables = {}
        for split in SPLITS:
            table = context.table(split)
            tables[split] = table[~table["video_id"].isin(list(self.excluded))]
        return context.with_splits(**tables)

    def notes(self) -> list[str]:
        """Lines shown under the result table."""
        lines = list(self.warnings)
        if self.excluded:
            lines.append(f"excluded {len(self.excluded)} bad videos (--skip-bad): {_names(self.excluded)}")
        if self.overlapping_patients:
            lines.append(
                f"{len(self.overlapping_patients)} patients appear in several splits (--allow-patient-overlap): "
                f"{_names(self.overlapping_patients)}"
            )
        return lines

    def record(self) -> dict[str, Any]:
        """The result JSON's ``data_checks`` entry."""
        return {
            "excluded": dict(self.excluded),
            "patient_overlap": list(self.overlapping_patients),
            "warnings": list(self.warnings),
        }


def check_split_names(splits: tuple[str, ...] | list[str], where: str = "data.pretrain_splits") -> None:
    """Refuse unknown split names (``[trian]``) and an empty list."""
    if not splits:
        raise UserError(f"{where} is empty; name at least one of {', '.join(SPLITS)}, e.g. --set {where}=[train]")
    for split in splits:
        if split not in SPLITS:
            raise UserError(
                f"{where} has unknown split {split!r}{did_you_mean(str(split), SPLITS)}; use {', '.join(SPLITS)}"
            )


def check_rows(
    dataset: VideoDataset, task: Task, *, skip_bad: bool = False, allow_patient_overlap: bool = False
) -> RowChecks:
    """Check labels and splits of the rows of ``dataset`` a run uses (before anything is decoded); a
    :class:`UserError` on a fault (see module doc). :meth:`RowChecks.check_videos` then checks the decoded videos."""
    report = RowChecks(dataset=dataset.name, skip_bad=skip_bad)
    report.exclude(_labels_out_of_range(dataset.table, task))
    overlap = _patients_in_several_splits(dataset.table)
    if overlap and not allow_patient_overlap:
        raise UserError(
            f"{len(overlap)} patients of {dataset.name} appear in several splits ({_names(overlap)}), which leaks "
            "test patients into training; fix the splits, or rerun with --allow-patient-overlap to accept it"
        )
    report.overlapping_patients = overlap
    return report


def _labels_out_of_range(table: pd.DataFrame, task: Task) -> dict[str, str]:
    if task.kind == "segmentation" or task.column not in table.columns or task.column not in LABEL_RANGES:
        return {}
    low, high = LABEL_RANGES[task.column]
    values = table[task.column].to_numpy(np.float64)
    outside = ~np.isnan(values) & ((values < low) | (values > high))
    return {
        str(video_id): f"({task.column} = {value:g} outside [{low:g}, {high:g}])"
        for video_id, value in zip(table["video_id"][outside], values[outside], strict=True)
    }


def _truncated(table: pd.DataFrame, cache: DecodeCache) -> dict[str, str]:
    bad = {}
    for video_id, listed in zip(table["video_id"], table["num_frames"], strict=True):
        decoded = cache.num_frames(video_id) if video_id in cache else None
        if decoded is not None and decoded < listed:
            bad[str(video_id)] = f"(decodes {decoded} of {listed} listed frames: truncated?)"
    return bad


def _patients_in_several_splits(table: pd.DataFrame) -> list[str]:
    splits = table.groupby("patient_id")["split"].nunique()
    return sorted(str(p) for p in splits.index[splits > 1])


def _names(items: dict[str, str] | list[str]) -> str:
    names = list(items)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more
