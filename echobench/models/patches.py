"""Clips ↔ per-token pixel vectors, and VideoMAE's normalised-pixel target.

Token order is t-major (``t'·H'W' + h'·W' + w'``), matching the encoder's tubelet embedding. Within a token the
pixel vector is ordered ``(dt, dy, dx, c)`` with the channel fastest: element
``((dt·patch + dy)·patch + dx)·C + c`` is pixel ``(c, t'·tubelet + dt, h'·patch + dy, w'·patch + dx)``
(VideoMAE's ``(p0 p1 p2) c`` layout).
"""

from __future__ import annotations

import torch
from einops import rearrange


def patchify(x: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` → ``(B, N, tubelet·patch·patch·C)``."""
    return rearrange(x, "b c (t dt) (h dy) (w dx) -> b (t h w) (dt dy dx c)", dt=tubelet, dy=patch, dx=patch)


def unpatchify(
    patches: torch.Tensor, grid: tuple[int, int, int], tubelet: int, patch: int, in_chans: int
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, tubelet·patch·patch·C)`` on ``grid`` → ``(B, C, T, H, W)``."""
    t, h, w = grid
    return rearrange(
        patches,
        "b (t h w) (dt dy dx c) -> b c (t dt) (h dy) (w dx)",
        t=t,
        h=h,
        w=w,
        dt=tubelet,
        dy=patch,
        dx=patch,
        c=in_chans,
    )


def normalized_pixel_targets(patches: torch.Tensor, tubelet: int, patch: int, in_chans: int) -> torch.Tensor:
    """Per token and per channel, ``(x − mean) / (unbiased std + 1e-6)`` over the token's pixels.

    Input and output are :func:`patchify` layout ``(B, N, tubelet·patch·patch·C)``.
    """
    pixels = rearrange(patches, "b n (p c) -> b n p c", p=tubelet * patch * patch, c=in_chans)
    mean = pixels.mean(dim=2, keepdim=True)
    std = pixels.var(dim=2, unbiased=True, keepdim=True).sqrt()
    return rearrange((pixels - mean) / (std + 1e-6), "b n p c -> b n (p c)")
