"""SIGMA: VideoMAE whose targets are Sinkhorn cluster assignments of projected pixel patches (METHODS.md baselines).

The encoder, tube masking and decoder are VideoMAE's (:class:`~echobench_plugins.videomae.VideoMAE`); only the
decoder's output width and the loss change. A trainable MLP projects each masked tubelet's pixels into the
decoder's output space; both the decoder's predictions and the projections are scored against learned prototypes,
and each branch predicts the other's hard Sinkhorn assignment (:func:`losses.swapped_cross_entropy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from echobench.api import ClipBatch, LossOutput, TrainState
from echobench.models.masking import gather_tokens
from echobench_plugins.sigma.losses import prototype_scores, swapped_cross_entropy
from echobench_plugins.videomae.method import VideoMAE, VideoMAEConfig


@dataclass
class SigmaConfig(VideoMAEConfig):
    """SIGMA's hyperparameters on top of VideoMAE's (mask ratio 0.9, decoder depth 4, half-width decoder).

    From METHODS.md: 1024 prototypes, Sinkhorn ε = 0.05 with 10 iterations, softmax temperature τ = 0.1, hard
    (argmax) swapped targets, both branches trained.

    Not in the paper (echobench's choices): the projection MLP has three linear layers
    (pixels → ``projection_hidden`` → ``projection_hidden`` → ``projection_dim``) with GELU; ``projection_dim`` = 256
    and ``projection_hidden`` = 512; projections and prototypes are L2-normalised before scoring (SwAV's form); the
    Sinkhorn samples are all masked tokens of the batch; the loss is the mean of the two swapped terms; the
    projected pixels are normalised per patch as VideoMAE's targets when ``norm_pix_loss`` is true.
    """

    num_prototypes: int = 1024
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 10
    temperature: float = 0.1
    projection_dim: int = 256
    projection_hidden: int = 512


class Sigma(VideoMAE):
    name = "sigma"
    version = "0.1.0"
    Config = SigmaConfig

    def __init__(self, config: SigmaConfig) -> None:
        for field in ("num_prototypes", "sinkhorn_iters", "projection_dim", "projection_hidden"):
            if getattr(config, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(config, field)}")
        for field in ("sinkhorn_eps", "temperature"):
            if not getattr(config, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(config, field)}")
        super().__init__(config)
        pixels = config.tubelet * config.patch * config.patch * config.in_chans
        self.projector = nn.Sequential(
            nn.Linear(pixels, config.projection_hidden),
            nn.GELU(),
            nn.Linear(config.projection_hidden, config.projection_hidden),
            nn.GELU(),
            nn.Linear(config.projection_hidden, config.projection_dim),
        )
        self.prototypes = nn.Parameter(torch.empty(config.num_prototypes, config.projection_dim))
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def prediction_dim(self) -> int:
        return self.config.projection_dim

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        cfg = self.config
        clips = batch.clips
        mask = self.draw_mask(batch).to(clips.device)
        prediction = self.predict_masked(clips, mask).flatten(0, 1)
        projected = self.projector(gather_tokens(self.pixel_patches(clips), mask, keep=True).flatten(0, 1))
        out = swapped_cross_entropy(
            prototype_scores(prediction, self.prototypes),
            prototype_scores(projected, self.prototypes),
            cfg.temperature,
            cfg.sinkhorn_eps,
            cfg.sinkhorn_iters,
        )
        terms = {
            "ce_prediction_to_pixels": float(out.prediction_to_pixels.detach()),
            "ce_pixels_to_prediction": float(out.pixels_to_prediction.detach()),
        }
        return LossOutput(loss=out.loss, terms=terms)
