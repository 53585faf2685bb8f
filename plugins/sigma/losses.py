"""SIGMA's loss (Salehi et al., "SIGMA: Sinkhorn-Guided Masked Video Modeling", ECCV 2024), as METHODS.md states it.

Two branches describe each masked token: the decoder's prediction and a projection of the token's pixels. Both are
scored against shared prototypes; Sinkhorn-Knopp turns each branch's scores into balanced cluster assignments, and
each branch predicts the *other* branch's (hard) assignment with a temperature-τ softmax (SwAV's swapped
prediction, Caron et al. 2020, Eq. 1; SIGMA's Sec. 3 applies it per token). The paper's own equation numbers are
not cited here because its text is not in ``shared/papers``.
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


def prototype_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``(N, K)`` of features ``(N, D)`` to prototypes ``(K, D)`` (both L2-normalised, as SwAV)."""
    return F.normalize(features.float(), dim=-1) @ F.normalize(prototypes.float(), dim=-1).T


def hard_assignments(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Cluster index per sample ``(N,)``: the argmax of the Sinkhorn-Knopp assignment of ``scores`` ``(N, K)``.

    Computed without gradient: the assignments are targets.
    """
    return sinkhorn_knopp(scores.detach(), eps=eps, iters=iters).argmax(dim=1)


def swapped_cross_entropy(
    prediction_scores: torch.Tensor, pixel_scores: torch.Tensor, tau: float, eps: float, iters: int
) -> SwappedLoss:
    """Swapped hard cross-entropy between the two branches' prototype scores, both ``(N, K)``.

    ``prediction_to_pixels = CE(softmax(prediction_scores/τ), argmax Sinkhorn(pixel_scores))`` and symmetrically;
    ``loss`` is their mean, so both branches (decoder and pixel projection) receive gradient.
    """
    pixel_targets = hard_assignments(pixel_scores, eps, iters)
    prediction_targets = hard_assignments(prediction_scores, eps, iters)
    prediction_to_pixels = F.cross_entropy(prediction_scores / tau, pixel_targets)
    pixels_to_prediction = F.cross_entropy(pixel_scores / tau, prediction_targets)
    return SwappedLoss((prediction_to_pixels + pixels_to_prediction) / 2, prediction_to_pixels, pixels_to_prediction)
