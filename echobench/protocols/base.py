"""Types shared by every protocol: the features a frozen protocol reads and the result it returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from echobench.config import apply_overrides, did_you_mean
from echobench.errors import UserError

C = TypeVar("C")


@dataclass
class FeatureSet:
    """Frozen clip embeddings of one split.

    ``features`` is ``(n_clips, D)`` float32; ``clip_video`` maps each clip to its row in ``video_ids``
    (several clips per video when a protocol encodes several starts); ``targets`` holds one task target per
    video (class index, or a float for regression). ``tokens`` ``(n_clips, T', H', W', D)`` (float16) is present
    when the protocol asked for the token grid; ``frame_indices`` ``(n_clips, T)`` are each clip's source frames.
    ``groups`` holds each video's patient id (aligned with ``video_ids``) when known: test intervals then
    resample patients.
    """

    features: np.ndarray
    clip_video: np.ndarray
    video_ids: list[str]
    targets: np.ndarray
    tokens: np.ndarray | None = None
    frame_indices: np.ndarray | None = None
    groups: list[str] | None = None

    def __post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ValueError(f"features must be (n_clips, D), got shape {self.features.shape}")
        if len(self.clip_video) != len(self.features):
            raise ValueError("clip_video must have one entry per clip")
        if len(self.targets) != len(self.video_ids):
            raise ValueError("targets must have one entry per video")
        if self.groups is not None and len(self.groups) != len(self.video_ids):
            raise ValueError("groups must have one patient id per video")

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    def clips_as_videos(self) -> FeatureSet:
        """Every clip as its own "video" carrying its video's target (per-clip predictions)."""
        return dataclasses.replace(
            self,
            clip_video=np.arange(len(self.features)),
            video_ids=[f"{self.video_ids[v]}#{i}" for i, v in enumerate(self.clip_video)],
            targets=np.asarray(self.targets)[self.clip_video],
            groups=None if self.groups is None else [self.groups[v] for v in self.clip_video],
        )


@dataclass
class ProtocolResult:
    """What a protocol returns; the harness adds provenance and writes JSON + MLflow.

    ``metrics`` are test metrics; ``ci`` maps a metric name to its bootstrap 95 % interval; ``chosen`` holds
    hyperparameters selected on validation (e.g. ``{"k": 20}``); ``val_metrics`` the validation metrics of the
    chosen setting; ``predictions`` one row per test video (``video_id``, ``target``, ``prediction`` and, for
    classification, ``score`` = probability of the positive class). ``per_seed`` lists each repeat's test
    metrics (seeds, label-fraction subsets, folds); ``summary`` is an optional table for people (e.g. one row
    per label fraction with mean ± SD) that the CLI prints instead of the flat metrics. ``ci_unit`` says what the
    intervals resampled (``patient`` or ``video``) and ``ci_units`` how many of them there were (None without
    intervals).
    """

    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    chosen: dict[str, float | int | str]
    val_metrics: dict[str, float]
    predictions: pd.DataFrame
    per_seed: dict[str, list[float]] = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    runs: list[dict[str, Any]] | None = None
    ci_unit: str | None = None
    ci_units: int | None = None


def config_from_mapping(cls: type[C], values: Mapping[str, Any], protocol: str) -> C:
    """Build a protocol config dataclass from a YAML ``config`` block and ``--set protocol.*`` values.

    Values take the same typed path as every other ``--set`` section (:func:`echobench.config.apply_overrides`:
    coercion to the field's annotation, one-line errors); unknown keys are a :class:`UserError` naming the
    closest setting.
    """
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            hint = did_you_mean(key, known)
            raise UserError(f"{protocol}: unknown setting {key!r}{hint}; known settings: {', '.join(known)}")
    return apply_overrides(cls(), dict(values), where="protocol")


def check_split(protocol: str, name: str, fs: FeatureSet, task: Any) -> None:
    """A split a protocol can use: non-empty, every video has clips, targets valid for ``task``."""
    if fs.num_videos == 0 or len(fs.features) == 0:
        raise UserError(f"{protocol}: split {name} is empty; the dataset needs train, val and test videos")
    counts = np.bincount(fs.clip_video, minlength=fs.num_videos)
    if len(counts) != fs.num_videos or (counts == 0).any():
        raise UserError(f"{protocol}: split {name} has videos without clips (or clips of unknown videos)")
    targets = np.asarray(fs.targets)
    if task.is_classification:
        ok = np.issubdtype(targets.dtype, np.integer) and ((targets >= 0) & (targets < len(task.classes))).all()
        if not ok:
            last = len(task.classes) - 1
            raise UserError(f"{protocol}: {name} targets of task {task.name} must be class indices 0..{last}")
    elif not np.isfinite(targets.astype(np.float64)).all():
        raise UserError(f"{protocol}: {name} has missing targets for task {task.name}; drop unlabeled videos first")
