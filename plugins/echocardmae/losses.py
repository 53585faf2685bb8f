"""EchoCardMAE's temporal-invariant alignment (Yang et al., Eq. 2) and denoised reconstruction targets (Sec. 2.4) as
pure functions."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

AlignVariant = Literal["infonce", "paper_eq2"]
BlurKind = Literal["median", "gaussian", "mean"]


def alignment_loss(
    z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1, variant: AlignVariant = "infonce"
) -> torch.Tensor:
    """Temporal-invariant alignment of two clips' features ``z1``, ``z2`` ``(B, D)``; row ``i`` of both is video ``i``.

    ``infonce`` (default): standard symmetric InfoNCE on L2-normalised features, ``s_ij = ẑ1_i·ẑ2_j / τ``;
    ``½ [CE(s, I) + CE(sᵀ, I)]`` with the positive in each denominator.

    ``paper_eq2``: Eq. 2 read literally, one way, unnormalised features and the positive left out of the
    denominator: ``mean_i [−log(exp(s_ii) / Σ_{j≠i} exp(s_ij))]`` with ``s_ij = z1_i·z2_j / τ`` (unbounded below).
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        shapes = f"{tuple(z1.shape)}, {tuple(z2.shape)}"
        raise ValueError(f"alignment needs two (B, D) feature sets with B >= 2, got {shapes}")
    if not tau > 0:
        raise ValueError(f"alignment temperature must be > 0, got {tau}")
    labels = torch.arange(z1.shape[0], device=z1.device)
    if variant == "infonce":
        logits = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / tau
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    if variant == "paper_eq2":
        logits = z1 @ z2.T / tau
        negatives = logits.masked_fill(torch.eye(len(labels), dtype=torch.bool, device=z1.device), float("-inf"))
        return (negatives.logsumexp(dim=1) - logits.diagonal()).mean()
    raise ValueError(f"unknown alignment variant {variant!r}; choose 'infonce' or 'paper_eq2'")


def gaussian_sigma(k: int) -> float:
    """OpenCV's sigma for a ``k``-tap Gaussian given sigma 0: ``0.3·((k − 1)/2 − 1) + 0.8``."""
    return 0.3 * ((k - 1) * 0.5 - 1) + 0.8


def blur_target(frames: torch.Tensor, kind: BlurKind = "median", k: int = 3) -> torch.Tensor:
    """Denoised reconstruction target: every frame of ``(B, C, T, H, W)`` blurred on its own with a ``k × k`` window.

    ``median`` equals OpenCV's ``medianBlur`` (replicated borders); ``mean`` its ``blur`` and ``gaussian`` its
    ``GaussianBlur`` with sigma :func:`gaussian_sigma` (both with reflect-101 borders). uint8 input gives uint8 output
    (the median is exact; mean and Gaussian round half to even). Blurs commute with a positive affine change of
    intensity, so normalised clips give the normalised blur of their pixels.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"blur kernel size must be odd and positive, got {k}")
    if frames.ndim != 5:
        raise ValueError(f"frames must be (B, C, T, H, W), got shape {tuple(frames.shape)}")
    b, c, t, h, w = frames.shape
    images = frames.reshape(b * c * t, 1, h, w).float()
    pad = k // 2
    if kind == "median":
        windows = F.unfold(F.pad(images, (pad,) * 4, mode="replicate"), k)
        blurred = windows.median(dim=1).values.reshape(b * c * t, 1, h, w)
    elif kind in ("mean", "gaussian"):
        if kind == "mean":
            taps = torch.full((k,), 1.0 / k)
        else:
            offsets = torch.arange(k, dtype=torch.float64) - pad
            taps = torch.exp(-(offsets**2) / (2 * gaussian_sigma(k) ** 2))
            taps = (taps / taps.sum()).float()
        kernel = (taps[:, None] * taps[None, :]).to(images)[None, None]
        padded = F.pad(images, (pad,) * 4, mode="reflect") if pad else images
        blurred = F.conv2d(padded, kernel)
    else:
        raise ValueError(f"unknown blur {kind!r}; choose median, gaussian or mean")
    blurred = blurred.reshape(b, c, t, h, w)
    if frames.dtype == torch.uint8:
        return blurred.round().clamp(0, 255).to(torch.uint8)
    return blurred.to(frames.dtype)
