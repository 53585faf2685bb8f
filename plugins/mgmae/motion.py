"""Motion-guided masking (MGMAE, Huang et al., ICCV 2023): a random masking map of a base time slice is warped along
optical flow to every other slice, and each slice masks its highest-valued tokens, so masked tubes follow motion
while every slice masks exactly the same number of tokens.

Token displacements are in token units on the grid ``(T', H', W')``: the flow between the first frames of
consecutive tubelets, averaged over each patch and divided by the patch size. Channel 0 is x (width), channel 1 is
y (height), OpenCV's order.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from echobench.models.masking import MaskRounding, masked_count

#: OpenCV's documented example parameters of ``calcOpticalFlowFarneback`` (pyr_scale, levels, winsize, iterations,
#: poly_n, poly_sigma, flags).
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


def farneback_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` float32 from uint8 frame ``source`` to ``target``: the pixel at ``(y, x)`` of
    ``source`` is found at ``(y + flow[y, x, 1], x + flow[y, x, 0])`` of ``target``."""
    return cv2.calcOpticalFlowFarneback(source, target, None, *FARNEBACK)


def pool_to_tokens(flow: np.ndarray, patch: int) -> np.ndarray:
    """Pixel flow ``(H, W, 2)`` → mean displacement per patch in token units ``(2, H/patch, W/patch)``."""
    h, w, _ = flow.shape
    pooled = flow.reshape(h // patch, patch, w // patch, patch, 2).mean(axis=(1, 3))
    return np.ascontiguousarray(pooled.transpose(2, 0, 1)) / patch


def token_displacement(frames: np.ndarray, tubelet: int, patch: int) -> np.ndarray:
    """Displacements ``(2, T', 2, H', W')`` float32 of a clip's uint8 frames ``(T, H, W)``.

    ``[0, t]`` points from each token of slice ``t`` to where it was in slice ``t − 1`` (zero for ``t = 0``);
    ``[1, t]`` to where it will be in slice ``t + 1`` (zero for the last slice). Slice ``t`` is represented by
    frame ``t · tubelet``.
    """
    slices = np.ascontiguousarray(frames[::tubelet])
    count, h, w = slices.shape
    out = np.zeros((2, count, 2, h // patch, w // patch), dtype=np.float32)
    for t in range(count):
        if t > 0:
            out[0, t] = pool_to_tokens(farneback_flow(slices[t], slices[t - 1]), patch)
        if t + 1 < count:
            out[1, t] = pool_to_tokens(farneback_flow(slices[t], slices[t + 1]), patch)
    return out


def sample_along(source: torch.Tensor, displacement: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Backward warp: ``out[b, i, j] = source[b, i + dy, j + dx]`` (bilinear) with ``(dx, dy) = displacement[b, :,
    i, j]``; positions whose source falls outside the grid take ``fill[b, i, j]``.

    ``source`` and ``fill`` are ``(B, H, W)``, ``displacement`` ``(B, 2, H, W)`` in token units.
    """
    b, h, w = source.shape
    rows = torch.arange(h, dtype=source.dtype, device=source.device)[:, None]
    cols = torch.arange(w, dtype=source.dtype, device=source.device)[None, :]
    x = cols + displacement[:, 0].to(source.dtype)
    y = rows + displacement[:, 1].to(source.dtype)
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    sampled = F.grid_sample(source[:, None], grid, mode="bilinear", align_corners=True)[:, 0]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return torch.where(inside, sampled, fill)


def warp_from_base(noise: torch.Tensor, displacement: torch.Tensor, base: int) -> torch.Tensor:
    """Masking map ``(B, T', H', W')``: ``noise[:, base]`` carried slice by slice along the flow, forwards (with
    ``displacement[:, 0]``) and backwards (with ``displacement[:, 1]``); tokens whose source leaves the grid (content
    entering the view) keep their own slice's ``noise``.

    ``noise`` ``(B, T', H', W')``; ``displacement`` ``(B, 2, T', 2, H', W')`` as :func:`token_displacement` gives.
    """
    count = noise.shape[1]
    if not 0 <= base < count:
        raise ValueError(f"base slice {base} outside 0 … {count - 1}")
    slices: list[torch.Tensor | None] = [None] * count
    slices[base] = noise[:, base]
    for t in range(base + 1, count):
        slices[t] = sample_along(slices[t - 1], displacement[:, 0, t], noise[:, t])
    for t in range(base - 1, -1, -1):
        slices[t] = sample_along(slices[t + 1], displacement[:, 1, t], noise[:, t])
    return torch.stack(slices, dim=1)


def top_k_per_slice(values: torch.Tensor, ratio: float, rounding: MaskRounding = "visible") -> torch.Tensor:
    """Mask ``(B, T'·H'·W')`` (t-major, True = masked) hiding the :func:`~echobench.models.masking.masked_count`
    highest values of every slice of ``values`` ``(B, T', H', W')``: the mask ratio holds exactly per slice and every
    row has equal counts.

    ``rounding="visible"`` keeps ``int(H'W'·(1 − ratio))`` tokens of each slice visible, as MGMAE's code
    (code: MCG-NJU/MGMAE engine_for_mgmae.py ``get_build_mask_volume_func``, ``torch.topk`` per slice)."""
    b, t, h, w = values.shape
    flat = values.reshape(b, t, h * w)
    ranks = (-flat).argsort(dim=-1).argsort(dim=-1)
    return (ranks < masked_count(h * w, ratio, rounding)).reshape(b, t * h * w)
