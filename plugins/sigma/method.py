"""SIGMA: VideoMAE whose targets are Sinkhorn cluster assignments of projected pixel patches (METHODS.md baselines).

The encoder, tube masking and decoder are VideoMAE's (:class:`~echobench_plugins.videomae.VideoMAE`); only the
decoder's output width and the loss change. A trainable MLP projects each masked tubelet's pixels into the
decoder's output space; both the decoder's predictions and the projections are scored against learned prototypes,
and each branch predicts the other's hard Sinkhorn assignment (:func:`losses.swapped_cross_entropy`). The
prototypes are renormalised to unit rows in place at the start of every step and trained by the pixel branch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from echobench.api import ClipBatch, LossOutput, TrainState
from echobench.config import ranged
from echobench.models.masking import gather_tokens
from echobench_plugins.sigma.losses import renormalize_prototypes_, swapped_cross_entropy
from echobench_plugins.videomae.method import VideoMAE, VideoMAEConfig


@dataclass
class SigmaConfig(VideoMAEConfig):
    """SIGMA's hyperparameters on top of VideoMAE's (mask ratio 0.9, ``int(0.9·H'W')`` tube positions masked as
    SIGMA's masking_generator.py, decoder depth 4, half-width decoder).

    The SIGMA paper is not in ``shared/papers``; the defaults follow the authors' official settings (code:
    QUVA-Lab/SIGMA scripts_pretrain/*.sh, modeling_pretrain.py ``PretrainVisionTransformer``,
    engine_for_pretraining.py ``train_one_epoch``):

    - ``num_prototypes`` 3000 (every script's ``--num_prototypes 3000``; run_mae_pretraining.py's unused argparse
      default is 1024), prototype width ``projection_dim`` 256 (the decoder's output width for ``--target_type
      mlp``), initialised ``randn`` and renormalised to unit rows in place at the start of every step
      (``normalize_prototypes``), scored without a further normalisation;
    - projector ``init_proj_mlp``: pixels → 1024 → 1024 → 512 → 256, GELU between the linear layers
      (``projection_hidden`` = (1024, 1024, 512)), fed the per-patch normalised pixels of the masked tubelets
      (``--normlize_target True``);
    - Sinkhorn ε = 0.05 (``sinkhorn_eps``; the SSv2 ViT-B scripts use 0.03) with 10 iterations over all masked
      tokens of the (global) batch; τ = 0.1 (``temperature``; hard-coded in the engine); hard (argmax) swapped
      targets;
    - the decoder branch scores against detached prototypes (``extract_assignments(x, detach=True)``), so only the
      pixel branch trains them; the loss is the **sum** of the two swapped terms (``loss = loss1 + loss2``).

    Not the official scripts' setting: the scripts pretrain SIGMA with DINO-feature targets (``--target_type
    dino_v1``, a frozen DINO ViT-B/16 teacher whose weights echobench cannot download); echobench runs the
    pixel-projection variant (``--target_type mlp``, the code's argparse default) that METHODS.md specifies.
    """

    num_prototypes: int = ranged(3000, ge=1)
    sinkhorn_eps: float = ranged(0.05, gt=0)
    sinkhorn_iters: int = ranged(10, ge=1)
    temperature: float = ranged(0.1, gt=0)
    projection_dim: int = ranged(256, ge=1)
    projection_hidden: tuple[int, ...] = ranged((1024, 1024, 512), ge=1)


def projection_mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Linear layers ``in_dim → hidden… → out_dim`` with GELU between them (code: QUVA-Lab/SIGMA ``init_proj_mlp``)."""
    dims = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        if i > 0:
            layers.append(nn.GELU())
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class Sigma(VideoMAE):
    name = "sigma"
    version = "0.2.0"
    Config = SigmaConfig

    def __init__(self, config: SigmaConfig) -> None:
        for field in ("num_prototypes", "sinkhorn_iters", "projection_dim"):
            if getattr(config, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(config, field)}")
        if not all(width >= 1 for width in config.projection_hidden):
            raise ValueError(f"projection_hidden widths must be >= 1, got {config.projection_hidden}")
        for field in ("sinkhorn_eps", "temperature"):
            if not getattr(config, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(config, field)}")
        super().__init__(config)
        pixels = config.tubelet * config.patch * config.patch * config.in_chans
        self.projector = projection_mlp(pixels, tuple(config.projection_hidden), config.projection_dim)
        self.prototypes = nn.Parameter(torch.randn(config.num_prototypes, config.projection_dim))
        renormalize_prototypes_(self.prototypes)

    def prediction_dim(self) -> int:
        return self.config.projection_dim

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        cfg = self.config
        clips = batch.clips
        renormalize_prototypes_(self.prototypes)
        mask = self.draw_mask(batch).to(clips.device)
        prediction = self.predict_masked(clips, mask).flatten(0, 1)
        projected = self.projector(gather_tokens(self.pixel_patches(clips), mask, keep=True).flatten(0, 1))
        out = swapped_cross_entropy(
            prediction, projected, self.prototypes, cfg.temperature, cfg.sinkhorn_eps, cfg.sinkhorn_iters
        )
        terms = {
            "ce_prediction_to_pixels": float(out.prediction_to_pixels.detach()),
            "ce_pixels_to_prediction": float(out.pixels_to_prediction.detach()),
        }
        return LossOutput(loss=out.loss, terms=terms)
