"""Frozen-encoder protocols: features come from the embedding cache, never from a fresh encode."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from echobench.context import ProtocolContext
from echobench.errors import UserError
from echobench.protocols.base import FeatureSet, ProtocolResult, config_from_mapping
from echobench.protocols.clip_variance import clip_variance
from echobench.protocols.knn import KnnConfig, run_knn
from echobench.protocols.probe import ProbeConfig, fit_probe, run_probe
from echobench.protocols.readout import Pool, check_pool


def knn_config(values: dict[str, Any]) -> KnnConfig:
    return KnnConfig.from_dict(values)


def _splits(ctx: ProtocolContext, pool: str) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    train, val, test = (ctx.features(split, pool=pool) for split in ("train", "val", "test"))
    return train, val, test


def run_knn_family(ctx: ProtocolContext) -> ProtocolResult:
    return run_knn(*_splits(ctx, ctx.config.pool), ctx.task, ctx.config)


def probe_config(values: dict[str, Any]) -> ProbeConfig:
    return ProbeConfig.from_dict(values)


def run_probe_family(ctx: ProtocolContext) -> ProtocolResult:
    return run_probe(*_splits(ctx, ctx.config.pool), ctx.task, ctx.config)


@dataclass
class ClipVarianceConfig:
    """``protocols/clip-variance.yaml``: a probe (``head``, ``epochs``) fitted on the protocol's evaluation clips of
    train/val predicts every one of ``num_starts`` evenly spaced clips of each test video."""

    num_starts: int = 16
    head: Literal["linear", "mlp"] = "linear"
    epochs: int = 100
    pool: Pool = "mean_std"
    ci_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        check_pool("clip-variance", self.pool)
        if isinstance(self.num_starts, bool) or not isinstance(self.num_starts, int) or self.num_starts < 2:
            raise UserError(f"clip-variance: num_starts must be an integer >= 2, got {self.num_starts!r}")

    def probe(self) -> ProbeConfig:
        return ProbeConfig(head=self.head, epochs=self.epochs, ci_resamples=0, seed=self.seed)


def clip_variance_config(values: dict[str, Any]) -> ClipVarianceConfig:
    return config_from_mapping(ClipVarianceConfig, values, "clip-variance")


def run_clip_variance_family(ctx: ProtocolContext) -> ProtocolResult:
    """EchoCardMAE Fig. 2: how much a video's prediction moves with its clip's start frame."""
    cfg: ClipVarianceConfig = ctx.config
    train, val = ctx.features("train", pool=cfg.pool), ctx.features("val", pool=cfg.pool)
    probe = fit_probe(train, val, ctx.task, cfg.probe(), cfg.seed)
    starts = dataclasses.replace(ctx.eval_spec, start="evenly", num_clips=cfg.num_starts)
    test = ctx.features("test", spec=starts, pool=cfg.pool)
    pred, score = probe.predict(test.clips_as_videos())
    order = np.argsort(test.clip_video, kind="stable")
    clip_number = np.empty(len(order), dtype=np.int64)
    starts = np.searchsorted(test.clip_video[order], test.clip_video[order])
    clip_number[order] = np.arange(len(order)) - starts
    result = clip_variance(
        score if score is not None else pred,
        test.clip_video,
        clip_number,
        test.targets,
        test.video_ids,
        ctx.task,
        cfg.ci_resamples,
        cfg.seed,
        test.groups,
    )
    result.chosen |= {"lr": probe.lr, "weight_decay": probe.weight_decay, "epoch": probe.epoch}
    result.val_metrics = probe.val_metrics
    return result
