"""The supervised ceiling's losses on a batch with missing labels, and the running target statistics that
standardise regression targets.

Not from a paper: the standard cross-entropy and mean squared error, restricted to labelled videos.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the rows of ``logits`` ``(B, C)`` whose ``labels`` ``(B,)`` are not -1 (missing);
    zero (still connected to ``logits``) when every label is missing."""
    if not bool((labels >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=-1)


def masked_mse(prediction: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries of ``targets`` ``(B,)`` that are not NaN (missing); zero (still
    connected to ``prediction``) when every target is missing."""
    valid = torch.isfinite(targets)
    if not bool(valid.any()):
        return prediction.sum() * 0.0
    return F.mse_loss(prediction.float()[valid], targets.float()[valid])


def merge_moments(
    count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running ``(count, mean, M2)`` (sum of squared deviations) after adding ``values``: the pairwise update of
    Chan, Golub & LeVeque (1979), so ``M2 / count`` is the population variance of every value seen."""
    values = values.double()
    n_b = torch.tensor(float(values.numel()), dtype=torch.float64, device=count.device)
    if values.numel() == 0:
        return count, mean, m2
    mean_b = values.mean()
    m2_b = (values - mean_b).square().sum()
    total = count + n_b
    delta = mean_b - mean
    return total, mean + delta * n_b / total, m2 + m2_b + delta.square() * count * n_b / total
