"""DISCOVER's equations as pure functions (Mishra et al., seed 004; METHODS.md, DISCOVER section).

The video and image self-distillation losses (Eqs. 3–6) are the shared :func:`echobench.models.distill.dino_loss`;
this module holds what is specific to DISCOVER: the semantic cluster distillation loss (Eqs. 7–9), the image
targets of video tokens, and what the teacher centre averages. The teacher-temperature warm-up is DINO's
(:func:`echobench.models.distill.teacher_temperature`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from echobench.models.sinkhorn import sinkhorn_knopp


def scd_loss(
    z_v: torch.Tensor,
    z_i: torch.Tensor,
    prototypes: torch.Tensor,
    tau: float = 0.1,
    eps: float = 0.05,
    iters: int = 10,
    hard: bool = False,
) -> torch.Tensor:
    """Semantic cluster distillation, DISCOVER Eqs. 7–9.

    ``z_v`` are the decoder's predictions at masked video tokens and ``z_i`` the image teacher's features at the
    same tokens, ``(B, N, D)`` or ``(M, D)``; ``prototypes`` ``(K, D)``. Features and prototypes are L2-normalised,
    so the scores ``s = ẑ·P̂ᵀ`` are cosines (Eq. 7). Sinkhorn-Knopp (ε, ``iters`` rounds) runs on the raw cosines
    of all tokens at once (Eq. 8; SwAV's convention, since Eq. 7's ``/τ`` followed by ε would overflow float32),
    and the cross-entropies use ``s/τ`` (Eq. 9)::

        L = mean_tokens CE(s_v/τ, sg(q_i)) + mean_tokens CE(s_i/τ, sg(q_v))

    ``z_i`` is detached (the image encoder learns only from its own self-distillation), so gradients reach
    ``z_v`` and the prototypes only. ``hard`` (the code's switch) replaces ``q_i`` by its one-hot argmax and keeps
    only the decoder side ``CE(s_v/τ, onehot(argmax q_i))``.
    """
    if z_v.shape != z_i.shape:
        raise ValueError(f"z_v {tuple(z_v.shape)} and z_i {tuple(z_i.shape)} must have the same shape")
    if prototypes.ndim != 2 or prototypes.shape[1] != z_v.shape[-1]:
        raise ValueError(f"prototypes must be (K, {z_v.shape[-1]}), got {tuple(prototypes.shape)}")
    p = F.normalize(prototypes.float(), dim=-1)
    s_v = F.normalize(z_v.reshape(-1, z_v.shape[-1]).float(), dim=-1) @ p.T
    s_i = F.normalize(z_i.detach().reshape(-1, z_i.shape[-1]).float(), dim=-1) @ p.T
    q_i = sinkhorn_knopp(s_i.detach(), eps, iters)
    log_p_v = F.log_softmax(s_v / tau, dim=-1)
    if hard:
        return F.nll_loss(log_p_v, q_i.argmax(dim=-1))
    q_v = sinkhorn_knopp(s_v.detach(), eps, iters)
    log_p_i = F.log_softmax(s_i / tau, dim=-1)
    return -(q_i * log_p_v).sum(dim=-1).mean() - (q_v * log_p_i).sum(dim=-1).mean()


def tubelet_average(frame_tokens: torch.Tensor, tubelet: int) -> torch.Tensor:
    """Image-token targets of video tokens: ``(B, T, H'W', D)`` per-frame patch tokens → ``(B, (T/tubelet)·H'W', D)``.

    A video token spans ``tubelet`` consecutive frames at one spatial patch; its target is the mean of the image
    tokens at that patch over those frames (echobench's choice: the paper pairs video and image tokens without
    saying how a tubelet maps to frames). Output tokens are t-major, as the video ViT's.
    """
    b, t, hw, d = frame_tokens.shape
    if t % tubelet:
        raise ValueError(f"{t} frames do not split into tubelets of {tubelet}")
    return frame_tokens.reshape(b, t // tubelet, tubelet, hw, d).mean(dim=2).reshape(b, (t // tubelet) * hw, d)


CenterSource = Literal["logits", "probabilities"]


def center_batch_values(
    teacher_logits: torch.Tensor, center: torch.Tensor, tau_t: float, source: CenterSource
) -> torch.Tensor:
    """The per-sample values ``(B, K)`` whose batch mean the teacher centre's EMA takes.

    ``"logits"``: the teacher's logits, as DINO (DINO Eq. 4; code: facebookresearch/dino ``DINOLoss.update_center``).
    ``"probabilities"``: the centred, sharpened teacher distribution ``softmax((logits − c)/τ_t)`` under the centre
    before its update, as DISCOVER's released code, which calls ``update_center`` on the teacher output after the
    softmax (code: mdivyanshu97/DISCOVR models/modeling_pretrain.py ``process_image_dino_batch`` and ``forward``).
    """
    if source == "logits":
        return teacher_logits.detach()
    if source != "probabilities":
        raise ValueError(f"center source must be 'logits' or 'probabilities', got {source!r}")
    return F.softmax((teacher_logits.detach().float() - center.float()) / tau_t, dim=-1)
