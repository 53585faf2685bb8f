"""Temporal MAE's frame-based baseline (Stebler et al., Table 1 "Frame-based"): the same ViT and reconstruction
objective on single frames; a clip's embedding is the mean of its frames' embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange

from echobench.api import ClipBatch, ClipSpec, Embedding, LossOutput, Method, MethodConfig, TrainState
from echobench.errors import UserError
from echobench.models.masking import framewise_random_mask
from echobench.models.vit import VideoViT
from echobench_plugins.config_checks import check_open_unit
from echobench_plugins.temporal_mae.losses import reconstruction_loss
from echobench_plugins.temporal_mae.method import build_pixel_decoder, mask_generator, pixel_targets
from echobench_plugins.videomae.method import TEMPORAL_MAE_PRETRAIN_DEFAULTS, TEMPORAL_MAE_SOURCES


class FrameViT(VideoViT):
    """A one-frame ViT applied to every frame of a clip on its own.

    ``grid`` is the clip's token grid ``(T, H', W')`` (one temporal token per frame), so downstream token heads see
    a clip as a video; ``frame_grid`` ``(1, H', W')`` is what one forward pass encodes.
    """

    def __init__(self, *, clip_frames: int, **kwargs: Any) -> None:
        super().__init__(frames=1, tubelet=1, **kwargs)
        self.frame_grid = self.grid
        self.grid = (clip_frames, self.frame_grid[1], self.frame_grid[2])

    @staticmethod
    def as_images(clips: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` → one-frame clips ``(B·T, C, 1, H, W)``, frame-major within each clip."""
        return rearrange(clips, "b c t h w -> (b t) c 1 h w")

    def forward_features(self, x: torch.Tensor) -> Embedding:
        """Per-frame CLS tokens averaged over the clip's frames; patch tokens as the grid ``(B, T, H', W', D)``."""
        if x.ndim != 5 or x.shape[2] != self.grid[0]:
            raise ValueError(f"FrameViT expects clips (B, C, {self.grid[0]}, H, W), got shape {tuple(x.shape)}")
        batch, frames = x.shape[0], x.shape[2]
        out = self.forward(self.as_images(x))
        patches = out[:, self.num_prefix :]
        per_frame = out[:, 0] if self.cls_token is not None else patches.mean(dim=1)
        pooled = per_frame.reshape(batch, frames, self.embed_dim).mean(dim=1)
        return Embedding(pooled=pooled, tokens=patches.reshape(batch, *self.grid, self.embed_dim))


@dataclass
class FrameMAEConfig(MethodConfig):
    """Temporal MAE's settings (ViT-T, 10 frames over one second, 32×32, learned spatial + temporal embeddings with
    a single time step, CLS token, raw-pixel Eq. 2 reconstruction, AdamW 1.5e-4 scaled by batch, wd 0.05) on single
    frames: every frame of a sampled clip is one image for masked reconstruction.

    ``oracle`` (Table 1's "Frame-based, Oracle"): clips spread from end-diastole to end-systole in pretraining and
    at evaluation.

    Not in the paper (echobench choices): the baseline's whole definition (the paper does not describe it) — the
    same ViT on single frames and a video embedding = mean over the clip's per-frame CLS tokens; ``mask_ratio``
    0.75 uniformly random per frame; ``patch`` 8; the decoder (depth 4, half width, fixed sin-cos positions);
    AdamW betas (0.9, 0.95). ``tubelet`` and ``stride`` are unused (one frame per token grid; time-based clips).
    """

    model: str = "vit_tiny"
    frames: int = 10
    size: int = 32
    patch: int = 8
    tubelet: int = 1
    seconds: float | None = 1.0
    oracle: bool = False
    mask_ratio: float = 0.75
    decoder_dim: int | None = None
    decoder_depth: int = 4
    decoder_heads: int | None = None
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        check_open_unit("mask_ratio", self.mask_ratio)
        if self.patch < 1 or self.size % self.patch:
            raise UserError(
                f"method.size ({self.size}) is not divisible by method.patch ({self.patch}); "
                "choose a size that is a multiple of the patch"
            )


class FrameMAE(Method):
    name = "frame_mae"
    version = "0.1.0"
    Config = FrameMAEConfig
    pretrain_defaults: ClassVar[dict[str, Any]] = TEMPORAL_MAE_PRETRAIN_DEFAULTS
    sources: ClassVar[dict[str, str]] = TEMPORAL_MAE_SOURCES

    def __init__(self, config: FrameMAEConfig) -> None:
        super().__init__(config)
        geometry = {"img_size": config.size, "patch": config.patch, "in_chans": config.in_chans}
        self.encoder = FrameViT.from_preset(
            config.model,
            clip_frames=config.frames,
            pos="learned_st",
            cls_token=True,
            drop_path=config.drop_path,
            **geometry,
        )
        self.decoder = build_pixel_decoder(self.encoder, config, self.encoder.frame_grid)

    @classmethod
    def eval_clip_settings(cls, config: MethodConfig) -> dict[str, Any]:
        return {"start": "ed_es"} if isinstance(config, FrameMAEConfig) and config.oracle else {}

    def clip_spec(self) -> ClipSpec:
        c = self.config
        if c.oracle:
            return ClipSpec(frames=c.frames, stride=c.stride, size=c.size, start="ed_es", needs_ed_es=True)
        return ClipSpec(frames=c.frames, stride=c.stride, size=c.size, seconds=c.seconds)

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        cfg = self.config
        images = FrameViT.as_images(batch.clips)
        grid = self.encoder.frame_grid
        mask = framewise_random_mask(images.shape[0], grid, cfg.mask_ratio, mask_generator(), images.device)
        visible = self.encoder(images, mask=mask)[:, self.encoder.num_prefix :]
        prediction = self.decoder(visible, mask, return_masked_only=False)
        target = pixel_targets(images, batch.norm, 1, cfg.patch)
        loss = reconstruction_loss(prediction.float(), target.float(), mask)
        return LossOutput(loss=loss, terms={"rec": float(loss.detach())})

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
