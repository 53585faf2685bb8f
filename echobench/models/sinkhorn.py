"""Sinkhorn–Knopp equipartition of samples over prototypes (SwAV, Caron et al. 2020, Algorithm 1 / Eq. 3).

DISCOVER's semantic cluster distillation (Eqs. 8–9) and SIGMA's cluster targets use this form. The iteration runs in
log space so ``exp(scores/eps)`` never overflows: SwAV's direct form turns ``inf`` for ``|scores/eps|`` beyond ~88
in float32, which ε = 0.05 reaches with unnormalised scores.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


def _across_ranks(log_sums: torch.Tensor, all_reduce: bool) -> torch.Tensor:
    """``log Σ_ranks exp(log_sums)`` elementwise (stable: shifted by the global maximum) when ``all_reduce``."""
    if not (all_reduce and dist.is_available() and dist.is_initialized()):
        return log_sums
    peak = log_sums.detach().clone()
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = (log_sums - peak).exp()
    dist.all_reduce(total)
    return total.log() + peak


def _sample_logsumexp(log_plan: torch.Tensor, all_reduce: bool = False) -> torch.Tensor:
    """``log Σ_samples exp(log_plan)`` per prototype, ``(1, K)``: the only reduction over samples, so the one
    that sums over every rank's samples in a data-parallel run (SwAV's ``distributed_sinkhorn``)."""
    return _across_ranks(torch.logsumexp(log_plan, dim=0, keepdim=True), all_reduce)


def _global_count(n: int, all_reduce: bool) -> int:
    if not (all_reduce and dist.is_available() and dist.is_initialized()):
        return n
    count = torch.tensor([n], dtype=torch.float64)
    dist.all_reduce(count)
    return int(count.item())


def _log_plan(scores: torch.Tensor, eps: float, iters: int, all_reduce: bool = False) -> torch.Tensor:
    """Log of the transport plan ``(N, K)`` after ``iters`` rounds, before the final per-sample scaling.

    Each round first gives every prototype total mass 1/K, then every sample total mass 1/N, so on return the
    sample marginals are exactly 1/N and the prototype marginals approach 1/K as the rounds converge.
    """
    n, k = scores.shape
    n = _global_count(n, all_reduce)
    log_plan = scores.float() / eps
    log_plan = log_plan - _across_ranks(torch.logsumexp(log_plan.flatten(), dim=0), all_reduce)
    for _ in range(iters):
        log_plan = log_plan - _sample_logsumexp(log_plan, all_reduce) - math.log(k)
        log_plan = log_plan - torch.logsumexp(log_plan, dim=1, keepdim=True) - math.log(n)
    return log_plan


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, eps: float = 0.05, iters: int = 10, all_reduce: bool = False) -> torch.Tensor:
    """Soft cluster assignments ``(N, K)`` of ``N`` samples to ``K`` prototypes from similarity ``scores`` ``(N, K)``.

    SwAV's Algorithm 1: start from ``Q = exp(scores/eps)`` normalised to total mass 1, then ``iters`` rounds of
    (prototype rows → mass 1/K each; sample columns → mass 1/N each), finally multiply by N so that each sample's
    assignment sums to 1. Computed in float32 (also for bf16/fp16 input) and in log space; the result is float32.

    The assignments are targets: no gradient flows (``torch.no_grad``), as SwAV's ``Q`` is computed without one.
    ``all_reduce=True`` (under a process group) equipartitions the global batch, every rank passing its own rows,
    as SwAV's ``distributed_sinkhorn``; without a process group it is the local computation.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, K), got shape {tuple(scores.shape)}")
    if eps <= 0 or iters < 1:
        raise ValueError(f"need eps > 0 and iters >= 1, got eps={eps}, iters={iters}")
    total = _global_count(scores.shape[0], all_reduce)
    return (_log_plan(scores, eps, iters, all_reduce) + math.log(total)).exp()
