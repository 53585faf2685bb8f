"""Heads over the frozen token grid (``attentive``, ``stff``, ``maxpool``), trained on cached tokens.

The encoder is frozen, so its token grids ``(T', H', W', D)`` come from the embedding cache (encoded once, in
float16) and only the head trains. Every clip is a training sample carrying its video's target. For each
learning rate of the grid a head is trained with AdamW for up to ``epochs`` epochs; after each epoch it is scored
on validation (video-level, by the task's primary metric) and keeps its best epoch's weights, stopping after
``patience`` epochs without improvement. The best (lr, epoch) on validation — the first lr among ties — is
evaluated once on test. Classification heads use cross-entropy, regression heads MSE on targets standardised by
the training split.

:class:`TaskHead` gives every head (also the fine-tuning protocols') one call signature:
``(pooled, tokens, frame_times) -> outputs``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from echobench.context import ProtocolContext
from echobench.data.tasks import Task
from echobench.errors import UserError
from echobench.models.heads import AttentiveProbe, MaxPoolHead, MeanStdHead
from echobench.models.stff import STFFHead
from echobench.protocols.base import FeatureSet, ProtocolResult, check_split, config_from_mapping
from echobench.protocols.scoring import (
    AGGREGATES,
    Aggregate,
    first_best,
    interval_unit,
    intervals,
    predictions_frame,
    primary_metric,
    task_metrics,
    video_outputs,
)

HeadKind = Literal["linear", "attentive", "stff", "maxpool", "mean_std"]
HEAD_KINDS: tuple[str, ...] = ("linear", "attentive", "stff", "maxpool", "mean_std")
TOKEN_HEADS: tuple[str, ...] = ("attentive", "stff", "maxpool", "mean_std")


class TaskHead(nn.Module):
    """A downstream head with one signature: ``forward(pooled (B, D), tokens (B, T', H', W', D), frame_times)``.

    ``linear`` reads the pooled feature; ``attentive`` (V-JEPA), ``stff`` (EchoVisionFM), ``maxpool`` and
    ``mean_std`` (grid mean + motion map) read the token grid; ``stff`` also reads each temporal token's real frame
    time ``(B, T')``.
    """

    def __init__(
        self, kind: str, dim: int, outputs: int, grid: tuple[int, int, int], num_heads: int | None = None
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise UserError(f"unknown head {kind!r}; choose one of {', '.join(HEAD_KINDS)}")
        self.kind = kind
        self.module: nn.Module
        if kind == "linear":
            self.module = nn.Linear(dim, outputs)
        elif kind == "attentive":
            self.module = AttentiveProbe(dim, outputs, num_heads or max(1, dim // 64))
        elif kind == "stff":
            self.module = STFFHead(dim, outputs, spatial=(grid[1], grid[2]))
        elif kind == "mean_std":
            self.module = MeanStdHead(dim, outputs, grid[1] * grid[2])
        else:
            self.module = MaxPoolHead(dim, outputs)

    @property
    def needs_tokens(self) -> bool:
        return self.kind in TOKEN_HEADS

    def forward(
        self, pooled: torch.Tensor | None, tokens: torch.Tensor | None, frame_times: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.kind == "linear":
            return self.module(pooled)
        if self.kind == "stff":
            return self.module(tokens, frame_times)
        return self.module(tokens)

    def no_weight_decay(self) -> set[str]:
        inner = getattr(self.module, "no_weight_decay", None)
        return {f"module.{name}" for name in inner()} if inner is not None else set()


def token_frame_times(frame_indices: np.ndarray, temporal_tokens: int) -> np.ndarray:
    """Real frame time of each temporal token ``(n_clips, T')``: the mean source frame of its tubelet."""
    n, frames = frame_indices.shape
    if frames % temporal_tokens:
        raise ValueError(f"{frames} clip frames do not split into {temporal_tokens} temporal tokens")
    return frame_indices.reshape(n, temporal_tokens, frames // temporal_tokens).mean(axis=2).astype(np.float32)


@dataclass
class TokenHeadConfig:
    """Protocol settings; field names match ``protocols/attentive.yaml`` and ``protocols/stff.yaml``."""

    head: HeadKind = "attentive"
    lrs: tuple[float, ...] = (1e-4, 1e-3)
    weight_decay: float = 0.05
    epochs: int = 20
    batch_size: int = 32
    patience: int = 5
    num_heads: int = 0
    aggregate: Aggregate = "mean"
    ci_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head not in TOKEN_HEADS:
            raise UserError(f"token-head protocol: head must be one of {', '.join(TOKEN_HEADS)}, got {self.head!r}")
        if self.aggregate not in AGGREGATES:
            raise UserError(f"token-head protocol: aggregate must be one of {', '.join(AGGREGATES)}")
        self.lrs = tuple(float(lr) for lr in (self.lrs if isinstance(self.lrs, list | tuple) else [self.lrs]))
        if not self.lrs or any(lr <= 0 for lr in self.lrs):
            raise UserError(f"token-head protocol: lrs must be a non-empty list of positive numbers, got {self.lrs}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise UserError(f"token-head protocol: {name} must be >= 1, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.num_heads < 0 or self.ci_resamples < 0:
            raise UserError("token-head protocol: weight_decay, num_heads and ci_resamples must be >= 0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TokenHeadConfig:
        return config_from_mapping(cls, values, "token-head protocol")


def run_token_head_family(ctx: ProtocolContext) -> ProtocolResult:
    grid = ctx.pretrained.method.encoder.grid
    splits = [ctx.features(split, tokens=True) for split in ("train", "val", "test")]
    return run_token_head(*splits, task=ctx.task, config=ctx.config, grid=grid)


def run_token_head(
    train: FeatureSet,
    val: FeatureSet,
    test: FeatureSet,
    *,
    task: Task,
    config: TokenHeadConfig,
    grid: tuple[int, int, int],
) -> ProtocolResult:
    """Train one head per lr on cached tokens, select (lr, epoch) on validation, evaluate once on test."""
    for name, fs in (("train", train), ("val", val), ("test", test)):
        check_split("token-head protocol", name, fs, task)
        if fs.tokens is None:
            raise ValueError(f"{name} features carry no token grid; encode with tokens")
    trainer = _HeadTrainer(train, val, task, config, grid)
    fits = [trainer.fit(lr) for lr in config.lrs]
    best = first_best(np.array([fit.score for fit in fits]), task.higher_is_better)
    chosen = fits[best]
    pred, score = trainer.predict(chosen.head, test)
    val_pred, val_score = trainer.predict(chosen.head, val)
    ci = intervals(test.targets, pred, score, config.ci_resamples, config.seed, test.groups)
    return ProtocolResult(
        metrics=task_metrics(task, test.targets, pred, score),
        ci=ci,
        chosen={"head": config.head, "lr": config.lrs[best], "epoch": chosen.epoch},
        val_metrics=task_metrics(task, val.targets, val_pred, val_score),
        predictions=predictions_frame(test, pred, score),
        **interval_unit(ci, test.groups, test.num_videos),
    )


@dataclass
class _Fit:
    head: TaskHead
    epoch: int
    score: float


class _HeadTrainer:
    def __init__(
        self, train: FeatureSet, val: FeatureSet, task: Task, config: TokenHeadConfig, grid: tuple[int, int, int]
    ) -> None:
        self.train, self.val, self.task, self.config, self.grid = train, val, task, config, grid
        clip_targets = np.asarray(train.targets)[train.clip_video]
        if task.is_classification:
            self.target_mean, self.target_std = 0.0, 1.0
            self.y = torch.from_numpy(clip_targets.astype(np.int64))
        else:
            values = np.asarray(train.targets, dtype=np.float64)
            self.target_mean, self.target_std = float(values.mean()), float(values.std()) or 1.0
            self.y = torch.from_numpy(((clip_targets - self.target_mean) / self.target_std).astype(np.float32))

    def _new_head(self) -> TaskHead:
        torch.manual_seed(self.config.seed)
        outputs = len(self.task.classes) if self.task.is_classification else 1
        dim = self.train.tokens.shape[-1]
        return TaskHead(self.config.head, dim, outputs, self.grid, self.config.num_heads or None)

    def _batch(self, fs: FeatureSet, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        index = rows.numpy()
        tokens = torch.from_numpy(fs.tokens[index].astype(np.float32))
        times = None
        if fs.frame_indices is not None:
            times = torch.from_numpy(token_frame_times(fs.frame_indices[index], self.grid[0]))
        return tokens, times

    def fit(self, lr: float) -> _Fit:
        cfg = self.config
        head = self._new_head()
        decay = [p for n, p in head.named_parameters() if p.ndim > 1 and n not in head.no_weight_decay()]
        plain = [p for n, p in head.named_parameters() if p.ndim <= 1 or n in head.no_weight_decay()]
        optimiser = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}], lr=lr
        )
        generator = torch.Generator().manual_seed(cfg.seed)
        best = _Fit(copy.deepcopy(head), 0, float("nan"))
        best_signed = -np.inf
        for epoch in range(1, cfg.epochs + 1):
            head.train()
            for rows in torch.randperm(len(self.y), generator=generator).split(cfg.batch_size):
                tokens, times = self._batch(self.train, rows)
                loss = self._loss(head(None, tokens, times), self.y[rows])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            pred, score = self.predict(head, self.val)
            value = float(
                primary_metric(self.task, self.val.targets, pred[None], None if score is None else score[None])[0]
            )
            signed = value if self.task.higher_is_better else -value
            if np.isfinite(signed) and signed > best_signed:
                best_signed, best = signed, _Fit(copy.deepcopy(head), epoch, value)
            elif epoch - best.epoch >= cfg.patience:
                break
        return best

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task.is_classification:
            return F.cross_entropy(out, y)
        return F.mse_loss(out[:, 0], y)

    @torch.no_grad()
    def predict(self, head: TaskHead, fs: FeatureSet) -> tuple[np.ndarray, np.ndarray | None]:
        head.eval()
        outputs = []
        for rows in torch.arange(len(fs.features)).split(max(self.config.batch_size, 64)):
            tokens, times = self._batch(fs, rows)
            outputs.append(head(None, tokens, times))
        out = torch.cat(outputs)[None]
        pred, score = video_outputs(
            out, fs.clip_video, fs.num_videos, self.task, self.config.aggregate, self.target_mean, self.target_std
        )
        return pred[0], None if score is None else score[0]
