"""Sinkhorn–Knopp equipartition of samples over prototypes (SwAV, Caron et al. 2020, Algorithm 1 / Eq. 3).

DISCOVER's semantic cluster distillation (Eqs. 8–9) and SIGMA's cluster targets use this form. The iteration runs in
log space so ``exp(scores/eps)`` never overflows: SwAV's direct form turns ``inf`` for ``|scores/eps|`` beyond ~88
in float32, which ε = 0.05 reaches with unnormalised scores.
"""

from __future__ import annotations

import math

import torch


def _sample_logsumexp(log_plan: torch.Tensor) -> torch.Tensor:
    """``log Σ_samples exp(log_plan)`` per prototype, ``(1, K)``.

    The only reduction over samples: a data-parallel version all-reduces here (the global sum over every rank's
    samples) and uses the global sample count in :func:`_log_plan`.
    """
    return torch.logsumexp(log_plan, dim=0, keepdim=True)


def _log_plan(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Log of the transport plan ``(N, K)`` after ``iters`` rounds, before the final per-sample scaling.

    Each round first gives every prototype total mass 1/K, then every sample total mass 1/N, so on return the
    sample marginals are exactly 1/N and the prototype marginals approach 1/K as the rounds converge.
    """
    n, k = scores.shape
    log_plan = scores.float() / eps
    log_plan = log_plan - torch.logsumexp(log_plan.flatten(), dim=0)
    for _ in range(iters):
        log_plan = log_plan - _sample_logsumexp(log_plan) - math.log(k)
        log_plan = log_plan - torch.logsumexp(log_plan, dim=1, keepdim=True) - math.log(n)
    return log_plan


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, eps: float = 0.05, iters: int = 10) -> torch.Tensor:
    """Soft cluster assignments ``(N, K)`` of ``N`` samples to ``K`` prototypes from similarity ``scores`` ``(N, K)``.

    SwAV's Algorithm 1: start from ``Q = exp(scores/eps)`` normalised to total mass 1, then ``iters`` rounds of
    (prototype rows → mass 1/K each; sample columns → mass 1/N each), finally multiply by N so that each sample's
    assignment sums to 1. Computed in float32 (also for bf16/fp16 input) and in log space; the result is float32.

    The assignments are targets: no gradient flows (``torch.no_grad``), as SwAV's ``Q`` is computed without one.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, K), got shape {tuple(scores.shape)}")
    if eps <= 0 or iters < 1:
        raise ValueError(f"need eps > 0 and iters >= 1, got eps={eps}, iters={iters}")
    return (_log_plan(scores, eps, iters) + math.log(scores.shape[0])).exp()
