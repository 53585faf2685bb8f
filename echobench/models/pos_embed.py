"""Fixed sinusoidal position tables for t-major token sequences.

Two conventions coexist in the reference methods and are kept apart on purpose:

* :func:`sincos_1d` is VideoMAE's table over the *flattened* token index, with sin and cos interleaved
  (sin on even channels, cos on odd ones).
* :func:`sincos_3d` is V-JEPA's table: one MAE-style 1-D table per axis (sin block then cos block) over the
  t', h' and w' coordinates, concatenated ``[t | h | w]``.

Tables are computed in float64 and returned as float32 so that they do not depend on the device's matmul
precision.
"""

from __future__ import annotations

import math

import torch

from echobench.errors import UserError

_BASE = 10000.0


def sincos_1d(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's table ``(num_positions, dim)``.

    ``angle[p, j] = p / 10000^(2⌊j/2⌋/dim)``; channel ``j`` holds ``sin(angle)`` for even ``j`` and
    ``cos(angle)`` for odd ``j``.
    """
    if num_positions < 1 or dim < 1:
        raise UserError(
            f"sincos_1d needs num_positions >= 1 and dim >= 1, got {num_positions}, {dim}; fix the model size"
        )
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim)
    angle = pos / _BASE ** (2 * torch.div(j, 2, rounding_mode="floor").double() / dim)
    table = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


def sincos_axis(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """MAE-style 1-D table of float ``positions`` ``(M,)`` → ``(M, dim)``: ``[sin(p·ω_k) | cos(p·ω_k)]``.

    ``ω_k = 1 / 10000^(k / (dim/2))`` for ``k = 0 … dim/2 − 1``.
    """
    half = dim // 2
    omega = 1.0 / _BASE ** (torch.arange(half, dtype=torch.float64) / half)
    angle = positions.double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


def sincos_3d(grid: tuple[int, int, int], dim: int, uniform_power: bool = True) -> torch.Tensor:
    """V-JEPA's 3-D table ``(T'·H'·W', dim)`` in t-major token order.

    Channel split (V-JEPA's ``get_3d_sincos_pos_embed``):

    * ``uniform_power=True`` (V-JEPA's pretraining configs): each axis gets ``2·⌈dim/6⌉`` channels; the
      concatenation ``[t | h | w]`` is truncated to ``dim`` (so ``w`` loses channels when ``dim`` is not a
      multiple of 6; 192, 384 and 768 are).
    * ``uniform_power=False`` (the model's default argument): ``t`` gets ``dim/2``, ``h`` and ``w`` ``dim/4``
      each; needs ``dim`` divisible by 8.

    Each axis block is ``[sin(p·ω_k) | cos(p·ω_k)]`` with ``ω_k = 10000^(−k/(d_axis/2))``.
    """
    t, h, w = grid
    if min(grid) < 1:
        raise UserError(f"sincos_3d needs a positive grid, got {grid}; fix frames/img_size/patch/tubelet")
    if uniform_power:
        d_t = d_h = d_w = 2 * math.ceil(dim / 6)
    else:
        if dim % 8:
            raise UserError(f"sincos_3d with uniform_power=False needs dim divisible by 8, got {dim}; change embed_dim")
        d_t, d_h, d_w = dim // 2, dim // 4, dim // 4
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    table = torch.cat(
        [sincos_axis(tt.flatten(), d_t), sincos_axis(hh.flatten(), d_h), sincos_axis(ww.flatten(), d_w)], dim=1
    )
    return table[:, :dim].float()
