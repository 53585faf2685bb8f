"""The supervised ceiling: the shared video ViT trained end to end on one task's labels of the training split.

Frozen protocols on its features measure how much of a task a frozen encoder of this architecture can capture when
it was trained for exactly that task; self-supervised methods are read against this ceiling and the random-init
floor. Evaluating it on the task (label column) it was trained on is flagged in the result (``trained_on_task``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from echobench.api import ClipBatch, ClipSpec, Embedding, LossOutput, Method, MethodConfig, TrainState
from echobench.data.tasks import get_task
from echobench.models.vit import VideoViT
from echobench_plugins.supervised.losses import masked_cross_entropy, masked_mse, merge_moments


@dataclass
class SupervisedConfig(MethodConfig):
    """``task``: the classification or regression task whose training-split labels train the encoder (part of the
    checkpoint hash, as every config field).

    Not from a paper (echobench's choices): VideoMAE's encoder (fixed 1-D sin-cos positions, mean-pooled tokens); a
    linear head on the pooled features; cross-entropy for classification, mean squared error on standardised
    targets for regression; the targets are standardised with the running mean and standard deviation of every
    training label seen so far (persistent buffers, so resume is exact), updated before each step uses them;
    AdamW at lr 1e-3 per 256 clips, β = (0.9, 0.999), weight decay 0.05.
    """

    task: str = "ef"
    drop_path: float = 0.0


class Supervised(Method):
    name = "supervised"
    version = "0.1.0"
    Config = SupervisedConfig
    pretrain_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "lr_scaling": "linear",
        "betas": (0.9, 0.999),
        "weight_decay": 0.05,
        "epochs": 50,
        "warmup_epochs": 5,
    }
    sources: ClassVar[dict[str, str]] = {
        "pretrain.epochs": "choice: as long as the paper profile's fine-tuning (EchoVisionFM's 50 epochs)",
        "pretrain.warmup_epochs": "choice: a tenth of the run",
    }
    target_count: torch.Tensor
    target_mean: torch.Tensor
    target_m2: torch.Tensor

    def __init__(self, config: SupervisedConfig) -> None:
        super().__init__(config)
        self.task = get_task(config.task)
        if self.task.kind == "segmentation":
            raise ValueError(
                f"task {config.task!r} is a segmentation task; supervised trains classification or regression"
            )
        self.encoder = VideoViT.from_config(config, pos="sincos", drop_path=config.drop_path)
        outputs = len(self.task.classes) if self.task.is_classification else 1
        self.head = nn.Linear(self.encoder.embed_dim, outputs)
        for name in ("target_count", "target_mean", "target_m2"):
            self.register_buffer(name, torch.zeros((), dtype=torch.float64))

    def clip_spec(self) -> ClipSpec:
        return ClipSpec(**vars(super().clip_spec()) | {"tasks": (self.config.task,)})

    def target_std(self) -> torch.Tensor:
        """Standard deviation of the training labels seen so far (1 until two have been seen)."""
        if float(self.target_count) < 2:
            return torch.ones((), dtype=torch.float64, device=self.target_m2.device)
        return (self.target_m2 / self.target_count).sqrt().clamp_min(1e-6)

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        labels = batch.labels[self.config.task]
        output = self.head(self.encoder.forward_features(batch.clips).pooled)
        if self.task.is_classification:
            loss = masked_cross_entropy(output, labels)
            return LossOutput(loss=loss, terms={"cross_entropy": float(loss.detach())})
        with torch.no_grad():
            moments = merge_moments(self.target_count, self.target_mean, self.target_m2, labels[labels.isfinite()])
            for buffer, value in zip((self.target_count, self.target_mean, self.target_m2), moments, strict=True):
                buffer.copy_(value)
        standardised = (labels.double() - self.target_mean) / self.target_std()
        loss = masked_mse(output[:, 0], standardised.float())
        return LossOutput(loss=loss, terms={"mse_standardised": float(loss.detach())})

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
