"""Frozen-encoder protocols: features come from the embedding cache, never from a fresh encode."""

from __future__ import annotations

from typing import Any

import numpy as np

from echobench.context import ProtocolContext
from echobench.embed import EncodedSplit
from echobench.protocols.base import FeatureSet, ProtocolResult
from echobench.protocols.knn import KnnConfig, run_knn
from echobench.protocols.probe import ProbeConfig, run_probe


def feature_set(encoded: EncodedSplit, targets: np.ndarray, valid: np.ndarray) -> FeatureSet:
    """Keep the videos that have a label (and their clips), re-indexing clips to the kept videos."""
    kept = np.flatnonzero(valid)
    new_row = np.full(len(valid), -1, dtype=np.int64)
    new_row[kept] = np.arange(len(kept))
    clip_keep = valid[encoded.clip_video]
    return FeatureSet(
        features=encoded.features[clip_keep],
        clip_video=new_row[encoded.clip_video[clip_keep]],
        video_ids=[encoded.video_ids[i] for i in kept],
        targets=targets[kept],
    )


def split_features(ctx: ProtocolContext, split: str) -> FeatureSet:
    encoded = ctx.encode(split)
    targets, valid = ctx.task.targets(ctx.dataset.split_table(split), ctx.dataset.name)
    return feature_set(encoded, targets, valid)


def knn_config(values: dict[str, Any]) -> KnnConfig:
    return KnnConfig.from_dict(values)


def run_knn_family(ctx: ProtocolContext) -> ProtocolResult:
    return run_knn(
        split_features(ctx, "train"), split_features(ctx, "val"), split_features(ctx, "test"), ctx.task, ctx.config
    )


def probe_config(values: dict[str, Any]) -> ProbeConfig:
    return ProbeConfig.from_dict(values)


def run_probe_family(ctx: ProtocolContext) -> ProtocolResult:
    return run_probe(
        split_features(ctx, "train"), split_features(ctx, "val"), split_features(ctx, "test"), ctx.task, ctx.config
    )
