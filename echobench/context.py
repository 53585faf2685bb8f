"""What a protocol receives: the pretrained method, the data, the task, its config and cached encoding.

Protocols ask for splits by name (``train``, ``val``, ``test``). By default these are the dataset's splits;
wrappers (label-fraction sweeps, k-fold) re-define them with :meth:`ProtocolContext.with_splits` — a subset of
the training videos, or folds drawn from train+val — and the inner protocol runs unchanged. Frozen features of
any re-defined split are cut out of the embedding cache of the dataset split each video belongs to, so no video
is encoded twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from echobench.api import ClipSpec
from echobench.data.base import VideoDataset
from echobench.data.decode_cache import DecodeCache
from echobench.data.tasks import Task
from echobench.embed import EncodedSplit, encode_split
from echobench.errors import UserError
from echobench.pretrain import Pretrained
from echobench.protocols.base import FeatureSet
from echobench.protocols.readout import needs_tokens, readout

SPLIT_NAMES = ("train", "val", "test")
#: The dataset split whose clips a temporal control (:attr:`ClipSpec.frame_control`) alters. The readout is fitted
#: and selected on intact clips and then tested on altered ones, so what it learnt from frame order is lost while
#: features that ignore order are unchanged; refitting on altered clips would instead measure what the set of frames
#: still carries.
CONTROLLED_SPLIT = "test"


@dataclass
class ProtocolContext:
    pretrained: Pretrained
    dataset: VideoDataset
    cache: DecodeCache
    task: Task
    config: Any
    eval_spec: ClipSpec
    norm: tuple[float, float]
    seed: int = 0
    splits: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Shared by every context derived with with_splits/with_config, so wrappers' inner runs add to one record.
    evaluated: dict[str, set[str]] = field(default_factory=dict)

    def with_splits(self, **tables: pd.DataFrame) -> ProtocolContext:
        """A context whose named splits are the given rows of the dataset table (others unchanged)."""
        unknown = set(tables) - set(SPLIT_NAMES)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; use {SPLIT_NAMES}")
        return dataclasses.replace(self, splits={**self.splits, **tables})

    def with_config(self, config: Any, seed: int | None = None) -> ProtocolContext:
        return dataclasses.replace(self, config=config, seed=self.seed if seed is None else seed)

    def table(self, split: str) -> pd.DataFrame:
        """Rows of a split (dataset rows; the ``split`` column keeps each video's dataset split)."""
        if split in self.splits:
            return self.splits[split].reset_index(drop=True)
        return self.dataset.split_table(split)

    def labelled(self, split: str, *, record: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
        """The split's rows that carry a label for the task, and their targets.

        Their video ids are recorded under the role ``split`` (for the leakage check) unless ``record`` is false:
        wrappers read whole splits only to re-divide them, and their inner runs record the roles they assign.
        """
        table = self.table(split)
        targets, valid = self.task.targets(table, self.dataset.name)
        rows = table[valid].reset_index(drop=True)
        if record:
            self.evaluated.setdefault(split, set()).update(str(v) for v in rows["video_id"])
        return rows, targets[valid]

    def encode(self, split: str, *, with_tokens: bool = False, spec: ClipSpec | None = None) -> EncodedSplit:
        """Frozen embeddings of a *dataset* split's evaluation clips (embedding cache first); a temporal control
        alters the clips of :data:`CONTROLLED_SPLIT` only."""
        spec = spec or self.eval_spec
        if split != CONTROLLED_SPLIT and spec.frame_control != "none":
            spec = dataclasses.replace(spec, frame_control="none")
        return encode_split(
            self.pretrained.method,
            self.pretrained.checkpoint_hash,
            self.dataset,
            self.cache,
            split,
            spec,
            self.norm,
            with_tokens=with_tokens,
        )

    def features(
        self, split: str, *, tokens: bool = False, spec: ClipSpec | None = None, pool: str = "encoder"
    ) -> FeatureSet:
        """Frozen features of the split's labelled videos, in table order, read from the embedding cache.

        ``pool`` names the readout (:mod:`echobench.protocols.readout`); readouts other than the plugin's own pooled
        vector are computed from the cached token grid, which is then dropped unless ``tokens`` asks for it.
        """
        if len(self.table(split)) == 0:
            raise UserError(
                f"split {split} of dataset {self.dataset.name} has no videos; give the dataset train, val and test "
                "videos (e.g. the Split column of a videofolder's labels.csv)"
            )
        table, targets = self.labelled(split)
        if len(table) == 0:
            raise UserError(
                f"split {split} has no video labelled for task {self.task.name}; the dataset needs labelled "
                "train, val and test videos"
            )
        with_tokens = tokens or needs_tokens(pool)
        sources = {name: self.encode(name, with_tokens=with_tokens, spec=spec) for name in table["split"].unique()}
        selected = select_videos(sources, table, targets)
        if pool == "encoder":
            return selected
        return dataclasses.replace(
            selected,
            features=readout(pool, selected.features, selected.tokens),
            tokens=selected.tokens if tokens else None,
        )


def select_videos(sources: dict[str, EncodedSplit], table: pd.DataFrame, targets: np.ndarray) -> FeatureSet:
    """The clips of ``table``'s videos (in table order) out of the encoded dataset splits they belong to."""
    clip_rows, owners = [], []
    for source, encoded in sources.items():
        rows = np.flatnonzero((table["split"] == source).to_numpy())
        position = pd.Index(encoded.video_ids).get_indexer(table["video_id"].to_numpy()[rows])
        if (position < 0).any():
            missing = table["video_id"].to_numpy()[rows][position < 0][0]
            raise ValueError(f"video {missing!r} is not in the encoded {source} split")
        order = np.argsort(encoded.clip_video, kind="stable")
        bounds = np.searchsorted(encoded.clip_video[order], np.arange(len(encoded.video_ids) + 1))
        counts = bounds[position + 1] - bounds[position]
        # Clip k of the i-th selected video sits at order[bounds[position[i]] + k].
        starts = np.repeat(bounds[position], counts) + _ranks(counts)
        clip_rows.append((source, order[starts]))
        owners.append(np.repeat(rows, counts))
    owner = np.concatenate(owners)
    by_video = np.argsort(owner, kind="stable")

    def gather(field: str) -> np.ndarray | None:
        parts = [getattr(sources[source], field) for source, _ in clip_rows]
        if any(part is None for part in parts):
            return None
        return np.concatenate([part[idx] for part, (_, idx) in zip(parts, clip_rows, strict=True)])[by_video]

    return FeatureSet(
        features=gather("features"),
        clip_video=owner[by_video],
        video_ids=[str(v) for v in table["video_id"]],
        targets=np.asarray(targets),
        tokens=gather("tokens"),
        frame_indices=gather("frame_indices"),
        groups=[str(p) for p in table["patient_id"]] if "patient_id" in table.columns else None,
    )


def _ranks(counts: np.ndarray) -> np.ndarray:
    """``[0, 1, …, c0 − 1, 0, 1, …, c1 − 1, …]`` for counts ``c``."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
