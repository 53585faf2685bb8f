"""Downstream tasks: which label column of a dataset table a task reads and how it becomes a target.

A task's ``version`` changes whenever its label rule changes, so results computed under an older rule are
never mixed with newer ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from echobench.config import did_you_mean
from echobench.errors import UserError

TaskKind = Literal["classification", "regression", "segmentation"]
LabelRule = Callable[[np.ndarray, str], np.ndarray]


@dataclass(frozen=True)
class Task:
    """One prediction target.

    ``column`` is the label column of the dataset table; ``label_rule`` maps its non-missing values to class
    indices (classification) and is ``None`` for regression, which predicts the column as is. Segmentation tasks
    read label maps (``VideoDataset.masks``) at the traced ED/ES frames; their ``column`` names that source.
    ``primary_metric`` is the validation metric protocols select hyperparameters by. ``classes[i]`` names
    class index ``i``; class 1 is the positive class.
    """

    name: str
    kind: TaskKind
    column: str
    description: str
    primary_metric: str
    higher_is_better: bool
    classes: tuple[str, ...] = ()
    version: int = 1
    label_rule: LabelRule | None = field(default=None, compare=False, repr=False)

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def targets(self, table: pd.DataFrame, dataset: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
        """``(targets, valid)`` for every row of ``table``.

        Rows whose label is missing are not dropped here, so row order stays aligned with the table; they
        have ``valid`` False and a placeholder target (-1 for classification, NaN for regression). Callers
        keep ``table[valid]`` and should report how many rows were left out. A missing or entirely empty
        column is a :class:`UserError`. A segmentation task's valid rows are the videos with traced ED and ES
        frames; its target is a placeholder 0 (the protocol reads the masks themselves).
        """
        if len(table) == 0:
            # An empty split has nothing to label; the caller names the split (ProtocolContext.features).
            return np.zeros(0, dtype=np.int64 if self.is_classification else np.float64), np.zeros(0, dtype=bool)
        if self.kind == "segmentation":
            return self._traced(table, dataset)
        if self.column not in table.columns:
            raise UserError(self._no_labels(dataset))
        raw = pd.to_numeric(table[self.column], errors="coerce").to_numpy(dtype=np.float64)
        bad = table[self.column].notna().to_numpy() & np.isnan(raw)
        if bad.any():
            example = table[self.column][bad].iloc[0]
            raise UserError(
                f"dataset {dataset} column '{self.column}' has non-numeric value {example!r} for task "
                f"{self.name}; fix the label table"
            )
        valid = np.isfinite(raw)
        if not valid.any():
            raise UserError(self._no_labels(dataset))
        if self.label_rule is None:
            return np.where(valid, raw, np.nan), valid
        labels = np.full(len(raw), -1, dtype=np.int64)
        labels[valid] = self.label_rule(raw[valid], dataset)
        return labels, valid

    def _traced(self, table: pd.DataFrame, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        valid = ((table["ed_frame"] >= 0) & (table["es_frame"] >= 0)).to_numpy()
        if not valid.any():
            raise UserError(
                f"dataset {dataset} has no video with traced ED and ES frames, which task {self.name} segments; "
                "choose a dataset with LV tracings or label maps"
            )
        return np.zeros(len(table), dtype=np.int64), valid

    def _no_labels(self, dataset: str) -> str:
        return (
            f"dataset {dataset} has no labels for task {self.name} (needs column '{self.column}'); "
            f"choose a task the dataset labels or add the column to its table"
        )


def _check_percent(ef: np.ndarray, dataset: str) -> None:
    """EF must be in percent: a table of fractions would silently put every video in one class."""
    if np.all(ef <= 1.0):
        raise UserError(
            f"dataset {dataset} stores EF as a fraction (all values <= 1); echobench expects percent (0-100)"
        )


def _reduced_ef(ef: np.ndarray, dataset: str) -> np.ndarray:
    _check_percent(ef, dataset)
    return (ef <= 50.0).astype(np.int64)


def _ef_outside_normal_range(ef: np.ndarray, dataset: str) -> np.ndarray:
    _check_percent(ef, dataset)
    return ((ef < 45.0) | (ef > 75.0)).astype(np.int64)


def _reduced_rvef(rvef: np.ndarray, dataset: str) -> np.ndarray:
    """RV dysfunction as the RVENet paper and code define it: 3D-echo RVEF below 45 %."""
    _check_percent(rvef, dataset)
    return (rvef < 45.0).astype(np.int64)


def _binary_column(values: np.ndarray, dataset: str) -> np.ndarray:
    if not np.isin(values, (0.0, 1.0)).all():
        others = sorted(set(np.unique(values)) - {0.0, 1.0})[:3]
        raise UserError(f"dataset {dataset} has labels {others} in a binary column; use 0/1 (1 = positive)")
    return values.astype(np.int64)


def _regression(name: str, column: str, description: str) -> Task:
    return Task(name, "regression", column, description, primary_metric="mae", higher_is_better=False)


def _classification(name: str, column: str, description: str, classes: tuple[str, str], rule: LabelRule) -> Task:
    return Task(
        name,
        "classification",
        column,
        description,
        primary_metric="balanced_accuracy",
        higher_is_better=True,
        classes=classes,
        label_rule=rule,
    )


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        _regression("ef", "ef", "left-ventricular ejection fraction in percent"),
        _classification(
            "ef_binary",
            "ef",
            "reduced EF (EF <= 50 %) vs normal; Temporal MAE (Stebler et al.)",
            ("normal", "reduced"),
            _reduced_ef,
        ),
        _classification(
            "ef_anomaly",
            "ef",
            "abnormal EF (EF < 45 % or EF > 75 %) vs normal; DISCOVER (Mishra et al.)",
            ("normal", "abnormal"),
            _ef_outside_normal_range,
        ),
        _regression("esv", "esv", "left-ventricular end-systolic volume in mL"),
        _regression("edv", "edv", "left-ventricular end-diastolic volume in mL"),
        _classification(
            "mi", "mi", "myocardial infarction (column mi: 1 = MI, 0 = none)", ("no_mi", "mi"), _binary_column
        ),
        Task(
            "lv_seg",
            "segmentation",
            "masks",
            "LV masks (and the dataset's other mask classes) at the traced ED and ES frames; Dice, IoU, PPV, recall",
            primary_metric="dice",
            higher_is_better=True,
        ),
        # EchoNet-LVH linear measurements (cm) and RVENet's right-ventricular EF.
        _regression("ivsd", "ivsd", "interventricular septal thickness at end-diastole in cm (EchoNet-LVH)"),
        _regression("lvidd", "lvidd", "LV internal diameter at end-diastole in cm (EchoNet-LVH)"),
        _regression("lvpwd", "lvpwd", "LV posterior wall thickness at end-diastole in cm (EchoNet-LVH)"),
        _regression("ivss", "ivss", "interventricular septal thickness at end-systole in cm (EchoNet-LVH)"),
        _regression("lvids", "lvids", "LV internal diameter at end-systole in cm (EchoNet-LVH)"),
        _regression("lvpws", "lvpws", "LV posterior wall thickness at end-systole in cm (EchoNet-LVH)"),
        _regression("rvef", "rvef", "right-ventricular ejection fraction in percent (RVENet, 3D echo)"),
        _classification(
            "rv_anomaly",
            "rvef",
            "reduced RVEF (RVEF < 45 %) vs normal; RVENet (Magyar et al., WACV 2023)",
            ("normal", "reduced"),
            _reduced_rvef,
        ),
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``; a :class:`UserError` with close matches otherwise."""
    if name in TASKS:
        return TASKS[name]
    raise UserError(f"unknown task {name!r}{did_you_mean(name, TASKS)}; known tasks: {', '.join(TASKS)}")
