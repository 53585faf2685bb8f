"""Small method plugins written against the Method API as a method author would, to test the harness with them."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from echobench.api import ClipBatch, Embedding, LossOutput, Method, MethodConfig, SampleMeta, TrainState
from echobench.distributed import batch_rows
from echobench.models.distill import update_center
from echobench.models.masking import tube_mask
from echobench.models.vit import VideoViT


@dataclass
class ToyConfig(MethodConfig):
    model: str = "vit_tiny"
    out_dim: int = 16
    momentum: float = 0.9
    center_momentum: float = 0.8


class ToyEMATeacher(Method):
    """A DINO-like method: a student on masked clips, an EMA teacher on full clips, a centre buffer, and a
    weight-normed head. Its downstream encoder is the teacher. Records every ``TrainState`` it is handed."""

    name = "toy_ema"
    version = "0.0.1"
    Config = ToyConfig
    states: ClassVar[list[TrainState]] = []

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.student = VideoViT.from_config(config)
        self.encoder = copy.deepcopy(self.student)
        self.encoder.requires_grad_(False)
        # The deprecated hook-based weight_norm is what broke deep copies of whole methods in fine-tuning.
        self.head = nn.utils.weight_norm(nn.Linear(self.student.embed_dim, config.out_dim))
        self.register_buffer("center", torch.zeros(config.out_dim))

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        type(self).states.append(state)
        clips = batch.clips
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        mask = tube_mask(clips.shape[0], self.student.grid, 0.5, generator)
        student = self.head(self.student(clips, mask=mask).mean(1))
        with torch.no_grad():
            teacher = self.head(self.encoder(clips).mean(1))
            self._teacher_mean = teacher.mean(0)
        target = F.softmax((teacher - self.center) / 0.05, dim=-1)
        loss = -(target * F.log_softmax(student / 0.1, dim=-1)).sum(-1).mean()
        return LossOutput(loss=loss, terms={"ce": float(loss.detach())})

    def after_step(self, state: TrainState) -> None:
        m, c = self.config.momentum, self.config.center_momentum
        with torch.no_grad():
            for teacher, student in zip(self.encoder.parameters(), self.student.parameters(), strict=True):
                teacher.mul_(m).add_(student.detach(), alpha=1 - m)
            self.center.mul_(c).add_(self._teacher_mean, alpha=1 - c)

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)


class _NoGradViT(VideoViT):
    @torch.no_grad()
    def forward_features(self, x: torch.Tensor) -> Embedding:
        return super().forward_features(x)


class NoGradEncoder(ToyEMATeacher):
    """Breaks the downstream contract: its encoder's features carry no gradient."""

    name = "toy_nograd"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.encoder = _NoGradViT.from_config(config)
        self.encoder.requires_grad_(False)


class StrayNoDecay(ToyEMATeacher):
    name = "toy_stray"

    def no_weight_decay(self) -> set[str]:
        return {"studnet.cls_token"}


class FlowLike(ToyEMATeacher):
    """Computes a per-sample tensor from the raw uint8 frames in the loader workers."""

    name = "toy_prepare"

    def prepare_sample(self, frames: torch.Tensor, frame_indices: np.ndarray, meta: SampleMeta) -> dict[str, Any]:
        import os

        noise = meta.generator().random(3)
        return {
            "mean_level": frames.float().mean().reshape(1),
            "noise": torch.from_numpy(noise),
            "pid": torch.tensor([os.getpid()]),
        }


class ToyEMADistributed(ToyEMATeacher):
    """The toy EMA method written for data-parallel runs: masks drawn for the global batch and sliced, and the
    centre updated with the global batch's mean teacher output (DINO's all-reduce)."""

    name = "toy_ema_ddp"

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        clips = batch.clips
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        total, rows = batch_rows(clips.shape[0])
        mask = tube_mask(total, self.student.grid, 0.5, generator)[rows]
        student = self.head(self.student(clips, mask=mask).mean(1))
        with torch.no_grad():
            self._teacher_logits = self.head(self.encoder(clips).mean(1))
        target = F.softmax((self._teacher_logits - self.center) / 0.05, dim=-1)
        loss = -(target * F.log_softmax(student / 0.1, dim=-1)).sum(-1).mean()
        return LossOutput(loss=loss, terms={"ce": float(loss.detach())})

    def after_step(self, state: TrainState) -> None:
        with torch.no_grad():
            for teacher, student in zip(self.encoder.parameters(), self.student.parameters(), strict=True):
                teacher.mul_(self.config.momentum).add_(student.detach(), alpha=1 - self.config.momentum)
            centre = update_center(self.center, self._teacher_logits, self.config.center_momentum, all_reduce=True)
            self.center.copy_(centre)
