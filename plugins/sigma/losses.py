"""SIGMA's loss (Salehi et al., "SIGMA: Sinkhorn-Guided Masked Video Modeling", ECCV 2024), as the authors' code
computes it (QUVA-Lab/SIGMA modeling_pretrain.py ``PretrainVisionTransformer.forward`` / ``extract_assignments``,
engine_for_pretraining.py ``train_one_epoch`` with ``--loss_func SWAV``).

Two branches describe each masked token: the decoder's prediction and a projection of the token's pixels. Both are
scored against shared prototypes; Sinkhorn-Knopp turns each branch's scores into balanced cluster assignments, and
each branch predicts the *other* branch's (hard) assignment with a temperature-τ softmax (SwAV's swapped
prediction, Caron et al. 2020, Eq. 1; SIGMA applies it per token). Only the pixel branch trains the prototypes: the
decoder branch scores against detached prototypes. The paper's own equation numbers are not cited here because its
text is not in ``shared/papers``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from echobench.models.sinkhorn import sinkhorn_knopp


class SwappedLoss(NamedTuple):
    loss: torch.Tensor
    prediction_to_pixels: torch.Tensor
    pixels_to_prediction: torch.Tensor


@torch.no_grad()
def renormalize_prototypes_(prototypes: torch.Tensor) -> None:
    """Scale every prototype row ``(K, D)`` to unit L2 norm, in place and outside autograd (code: QUVA-Lab/SIGMA
    modeling_pretrain.py ``normalize_prototypes``, run at the start of every forward pass)."""
    prototypes.copy_(F.normalize(prototypes.float(), dim=1).to(prototypes.dtype))


def prototype_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Scores ``(N, K)`` of features ``(N, D)`` against prototypes ``(K, D)``: ``normalize(features) · prototypesᵀ``.

    The features are L2-normalised, the prototypes enter as they are: after :func:`renormalize_prototypes_` they are
    unit rows, so the scores are cosines, and their gradient is the plain one, not the 1/‖w‖-scaled, tangent-projected
    gradient through a normalisation (code: QUVA-Lab/SIGMA ``extract_assignments``).
    """
    return F.normalize(features.float(), dim=-1) @ prototypes.float().T


def hard_assignments(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Cluster index per sample ``(N,)``: the argmax of the Sinkhorn-Knopp assignment of ``scores`` ``(N, K)``.

    Computed without gradient: the assignments are targets. Under a process group the Sinkhorn marginals are over
    the global batch, as the code's ``find_optimal_assignment(…, world_size)``.
    """
    return sinkhorn_knopp(scores.detach(), eps=eps, iters=iters, all_reduce=True).argmax(dim=1)


def swapped_cross_entropy(
    prediction: torch.Tensor, projection: torch.Tensor, prototypes: torch.Tensor, tau: float, eps: float, iters: int
) -> SwappedLoss:
    """SIGMA's swapped hard cross-entropy of decoder predictions and pixel projections, both ``(N, D)``.

    ``s_pred = prototype_scores(prediction, sg(prototypes))`` and ``s_pix = prototype_scores(projection,
    prototypes)``; ``prediction_to_pixels = CE(s_pred/τ, argmax Sinkhorn(s_pix))``, ``pixels_to_prediction =
    CE(s_pix/τ, argmax Sinkhorn(s_pred))`` (each a mean over the N tokens) and ``loss`` is their **sum**, as the code's
    ``loss = loss1 + loss2``. Gradient reaches the decoder through ``prediction_to_pixels`` only, the projector and
    the prototypes through ``pixels_to_prediction`` only.
    """
    prediction_scores = prototype_scores(prediction, prototypes.detach())
    pixel_scores = prototype_scores(projection, prototypes)
    pixel_targets = hard_assignments(pixel_scores, eps, iters)
    prediction_targets = hard_assignments(prediction_scores, eps, iters)
    prediction_to_pixels = F.cross_entropy(prediction_scores / tau, pixel_targets)
    pixels_to_prediction = F.cross_entropy(pixel_scores / tau, prediction_targets)
    return SwappedLoss(prediction_to_pixels + pixels_to_prediction, prediction_to_pixels, pixels_to_prediction)
