"""An image ViT applied to every frame of a clip, behind the video encoder contract.

Image-level methods (the DINO-on-frames baseline, DISCOVER's image branch) need per-frame tokens, while every
downstream protocol expects a :class:`echobench.api.VideoEncoder`: clips in, a pooled vector and a token grid out.
"""

from __future__ import annotations

from typing import Any

import torch

from echobench.api import Embedding
from echobench.models.vit import VideoViT


class FrameViT(VideoViT):
    """A single-frame ViT (tubelet 1, CLS token) whose ``forward_features`` encodes each of a clip's
    ``clip_frames`` frames alone and returns the mean of the frame CLS tokens over the clip as ``pooled`` and the
    per-frame patch tokens as the grid ``(T, H', W')``.

    Parameter names are the video ViT's, so layer-wise lr decay (``group_matcher``) and ``no_weight_decay`` apply
    unchanged. ``encode_frames`` is the image-level use on ``(N, C, H, W)`` frames.
    """

    def __init__(self, *, clip_frames: int, **kwargs: Any) -> None:
        super().__init__(frames=1, tubelet=1, cls_token=True, **kwargs)
        self.clip_frames = clip_frames
        _, h, w = self.grid
        self.grid = (clip_frames, h, w)

    @classmethod
    def for_clips(cls, model: str, clip_frames: int, size: int, patch: int, in_chans: int, **kwargs: Any) -> FrameViT:
        return cls.from_preset(model, clip_frames=clip_frames, img_size=size, patch=patch, in_chans=in_chans, **kwargs)  # type: ignore[return-value]

    def frame_embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus positions ``(N, H'W', D)`` of frames ``(N, C, H, W)``."""
        return self.embed(frames[:, :, None])

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """CLS and patch tokens ``(N, 1 + H'W', D)`` of frames ``(N, C, H, W)``."""
        return self.forward(frames[:, :, None])

    def forward_features(self, clips: torch.Tensor) -> Embedding:
        b, c, t, h, w = clips.shape
        if t != self.clip_frames:
            raise ValueError(f"FrameViT was built for {self.clip_frames}-frame clips, got {t} frames")
        out = self.encode_frames(clips.transpose(1, 2).reshape(b * t, c, h, w))
        pooled = out[:, 0].reshape(b, t, self.embed_dim).mean(dim=1)
        return Embedding(pooled=pooled, tokens=out[:, 1:].reshape(b, *self.grid, self.embed_dim))
