"""V-JEPA and 3-D localisation losses (Ellis et al., seed 003), as pure functions of tensors.

Tokens are t-major over the grid ``(T', H', W')``: token ``n`` sits at ``t = n // (H'W')``, ``i = (n // W') % H'``,
``j = n % W'``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Grid = tuple[int, int, int]


def token_coordinates(index: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Grid coordinates ``(..., 3)`` = ``(t, i, j)`` of t-major token indices ``(...)``."""
    _, h, w = grid
    return torch.stack([index // (h * w), (index // w) % h, index % w], dim=-1)


def localisation_targets(idx1: torch.Tensor, idx2: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Eq. 2: ``Δ = ((t1 − t2)/T', (i1 − i2)/H', (j1 − j2)/W')`` ``(B, P, 3)`` float32 for token pairs ``(B, P)``.

    Every component lies in (−1, 1): two tokens of one grid differ by at most ``T' − 1`` along t (likewise i, j).
    """
    if idx1.shape != idx2.shape:
        raise ValueError(f"pair indices must have one shape, got {tuple(idx1.shape)} and {tuple(idx2.shape)}")
    num_tokens = grid[0] * grid[1] * grid[2]
    for index in (idx1, idx2):
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_tokens):
            raise ValueError(f"token indices must lie in [0, {num_tokens}) for grid {grid}")
    sizes = torch.tensor(grid, dtype=torch.float32, device=idx1.device)
    offsets = (token_coordinates(idx1, grid) - token_coordinates(idx2, grid)).float()
    return offsets / sizes


def localisation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``L_ll = 1/(P·B) Σ_b Σ_pairs ‖F([e_m1; e_m2]) − Δ‖²₂`` for ``pred`` and ``target`` ``(B, P, 3)``.

    The squared error is summed over the three components and averaged over the ``B·P`` pairs (not over the
    ``3·B·P`` scalars, as ``F.mse_loss`` would). The target carries no gradient.
    """
    if pred.shape != target.shape or pred.shape[-1] != 3:
        raise ValueError(f"pred and target must both be (B, P, 3), got {tuple(pred.shape)} and {tuple(target.shape)}")
    return (pred.float() - target.detach().float()).square().sum(dim=-1).mean()


def jepa_loss(pred: torch.Tensor, target_tokens: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``L_jepa = mean |P_φ(E_θ(x), Δy) − sg(LN(Ē_θ(y)))|`` over the predicted tokens ``(B, n, D)``.

    ``target_tokens`` are the target encoder's outputs at the predicted positions; as V-JEPA's code, they are
    layer-normalised over the feature axis without affine parameters and detached (stop-gradient). Computed in
    float32.
    """
    if pred.shape != target_tokens.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target tokens {tuple(target_tokens.shape)} must match")
    target = target_tokens.detach().float()
    target = F.layer_norm(target, (target.shape[-1],))
    return (pred.float() - target).abs().mean()


def combined_loss(loss_jepa: torch.Tensor, loss_ll: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 4: ``L = λ·L_jepa + (1 − λ)·L_ll`` (λ weights the V-JEPA term; λ = 1 is plain V-JEPA)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"λ must be in [0, 1], got {lam}")
    return lam * loss_jepa + (1.0 - lam) * loss_ll


def sample_pairs(
    batch: int, num_masked: int, pairs: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``(B, P)`` in ``[0, num_masked)`` of ``pairs`` token pairs per sample: the first uniform, the
    second uniform over the other ``num_masked − 1`` positions (with replacement across pairs, ``m1 ≠ m2``)."""
    if num_masked < 2:
        raise ValueError(f"pairs need at least two masked tokens per sample, got {num_masked}")
    device = generator.device
    first = torch.randint(0, num_masked, (batch, pairs), generator=generator, device=device)
    shift = torch.randint(1, num_masked, (batch, pairs), generator=generator, device=device)
    return first, (first + shift) % num_masked
