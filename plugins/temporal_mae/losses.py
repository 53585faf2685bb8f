"""Temporal MAE's pretraining losses (Stebler et al., Sec. 2.3) as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``L_rec = (1/|M|) Σ_{i∈M} ‖P̂[i] − P[i]‖²``.

    ``pred`` and ``target`` are per-token pixel vectors ``(B, N, P)``; ``mask`` ``(B, N)`` is True at masked tokens.
    The squared error is summed over a patch's ``P`` pixels and averaged over the masked patches of the whole batch
    (``|M|`` counts them); visible tokens do not contribute.
    """
    if pred.shape != target.shape or pred.shape[:2] != mask.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)} differ")
    if not bool(mask.any()):
        raise ValueError("Eq. 2 needs at least one masked patch")
    per_patch = (pred - target).square().sum(dim=-1)
    return per_patch[mask].mean()


def temporal_contrastive_loss(frame_feats: torch.Tensor, tau_p: float, tau_m: float) -> torch.Tensor:
    """Eqs. 4–7 on frame representations ``f_t`` (Eq. 3, computed by the caller) ``(B, T, D)``.

    For every pair ``t < t + Δ`` of one clip, ``d = 1 − cos(f_t, f_{t+Δ})`` (Eqs. 4–5); the pair costs ``d²`` when
    ``Δ ≤ τ_p`` (temporally close: pulled together) and ``max(0, τ_m − d)²`` otherwise (pushed at least ``τ_m``
    apart), Eq. 6. The sum is divided by ``C = Σ_t (T − t) = T(T − 1)/2`` (Eq. 7), and the per-clip losses are
    averaged over the batch.
    """
    if frame_feats.ndim != 3 or frame_feats.shape[1] < 2:
        raise ValueError(f"frame_feats must be (B, T, D) with T >= 2 frames, got {tuple(frame_feats.shape)}")
    frames = frame_feats.shape[1]
    unit = F.normalize(frame_feats, dim=-1)
    first, second = torch.triu_indices(frames, frames, offset=1, device=frame_feats.device)
    distance = 1.0 - (unit[:, first] * unit[:, second]).sum(dim=-1)
    close = (second - first) <= tau_p
    cost = torch.where(close, distance.square(), (tau_m - distance).clamp(min=0.0).square())
    return cost.mean()
