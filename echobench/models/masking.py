"""Mask generators and token gathering.

Masks are boolean ``(B, N)`` over t-major tokens, True = masked (hidden from the encoder). Every generator
masks the same number of tokens in every row, so visible tokens gather to a dense ``(B, N_vis, D)``.

Randomness comes only from the ``torch.Generator`` passed in: noise is drawn on the generator's device and the
mask is then moved to ``device``, so a seed gives the same mask on every device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from echobench.errors import UserError

Grid = tuple[int, int, int]


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise UserError(f"mask ratio must be in [0, 1), got {ratio}; set a ratio such as 0.75 or 0.9")


def _random_ranks(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation rank ``0 … L−1`` along the last axis, independently per leading index."""
    noise = torch.rand(shape, generator=generator, device=generator.device)
    return noise.argsort(dim=-1).argsort(dim=-1)


def tube_mask(
    batch: int, grid: Grid, ratio: float, generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """VideoMAE tube masking: ``int(ratio·H'W')`` spatial positions per sample, masked at every t'."""
    _check_ratio(ratio)
    t, h, w = grid
    spatial = _random_ranks((batch, 1, h * w), generator) < int(ratio * h * w)
    return spatial.expand(batch, t, h * w).reshape(batch, t * h * w).to(device)


def random_mask(
    batch: int, num_tokens: int, ratio: float, generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """``int(ratio·N)`` tokens masked uniformly at random per sample."""
    _check_ratio(ratio)
    return (_random_ranks((batch, num_tokens), generator) < int(ratio * num_tokens)).to(device)


def framewise_random_mask(
    batch: int, grid: Grid, ratio: float, generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """An independent random subset of ``int(ratio·H'W')`` positions per t' (Temporal MAE Eq. 1)."""
    _check_ratio(ratio)
    t, h, w = grid
    per_frame = _random_ranks((batch, t, h * w), generator) < int(ratio * h * w)
    return per_frame.reshape(batch, t * h * w).to(device)


class KeyAreaMask(NamedTuple):
    """Three-way split of tokens for masking restricted to candidates (EchoCardMAE key-area masking).

    ``masked``: hidden from the encoder and reconstructed. ``background``: neither encoded nor reconstructed.
    Visible = neither. Both are ``(B, N)`` bool with equal row counts.
    """

    masked: torch.Tensor
    background: torch.Tensor

    @property
    def hidden(self) -> torch.Tensor:
        """Tokens the encoder must not see: pass this as the encoder's ``mask``."""
        return self.masked | self.background

    @property
    def visible(self) -> torch.Tensor:
        return ~self.hidden


def restricted_random_mask(
    candidates: torch.Tensor,
    ratio: float,
    grid: Grid,
    generator: torch.Generator,
    per_frame: bool = True,
    device: torch.device | str | None = None,
) -> KeyAreaMask:
    """Random masking among ``candidates`` ``(B, N)`` (True = may be encoded/reconstructed) only.

    Equal row counts: within each group (each t' when ``per_frame``, else the whole clip) let ``k`` be the
    *smallest* candidate count across the batch. Every sample masks ``int(ratio·k)`` and keeps ``k − int(ratio·k)``
    visible tokens, both drawn uniformly from its own candidates; a sample's surplus candidates (beyond ``k``,
    also chosen at random) join the background. The ratio therefore holds exactly per group and sample, and a
    batch whose sector sizes agree (or a fixed ROI) loses nothing.
    """
    _check_ratio(ratio)
    b, n = candidates.shape
    t, h, w = grid
    if n != t * h * w:
        raise ValueError(f"candidates have {n} tokens but grid {grid} has {t * h * w}")
    groups = (b, t, h * w) if per_frame else (b, 1, n)
    cand = candidates.to(generator.device).reshape(groups)
    # Non-candidates are ranked after every candidate, so ranks 0 … count−1 are a random order of candidates.
    noise = torch.rand(groups, generator=generator, device=generator.device).masked_fill(~cand, 2.0)
    ranks = noise.argsort(dim=-1).argsort(dim=-1)
    keep = cand.sum(dim=-1).amin(dim=0)[None, :, None]
    num_masked = (ratio * keep.double()).floor().long()  # float64, as Python's int(ratio·k)
    if int((keep - num_masked).sum()) == 0:
        raise UserError(
            "key-area masking left no visible token: the candidate (sector) mask is empty for some clip; "
            "check the sector mask or lower the mask ratio"
        )
    masked = ranks < num_masked
    background = ranks >= keep
    return KeyAreaMask(masked.reshape(b, n).to(device), background.reshape(b, n).to(device))


def gather_tokens(tokens: torch.Tensor, mask: torch.Tensor, keep: bool = False) -> torch.Tensor:
    """Tokens ``(B, N, D)`` where ``mask == keep`` as a dense ``(B, n, D)`` in t-major order.

    ``keep=False`` gives the visible tokens, ``keep=True`` the masked ones.
    """
    selected = mask == keep
    counts = selected.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"mask rows select different token counts {counts.tolist()}; masks need equal row counts")
    return tokens[selected].reshape(tokens.shape[0], -1, tokens.shape[-1])


def gather_by_index(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Tokens ``(B, N, D)`` at integer positions ``index`` ``(B, n)`` → ``(B, n, D)``, in ``index`` order."""
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def _block_union(
    batch: int,
    grid: Grid,
    generator: torch.Generator,
    scales: tuple[float, ...],
    counts: tuple[int, ...],
    aspect: tuple[float, float],
) -> torch.Tensor:
    """Union of the multiblock rectangles per sample as a spatial mask ``(B, H'·W')`` (before any trimming)."""
    _, h, w = grid
    area = torch.tensor([int(s * h * w) for s, c in zip(scales, counts, strict=True) for _ in range(c)])
    device = generator.device
    ratio = aspect[0] + (aspect[1] - aspect[0]) * torch.rand(batch, len(area), generator=generator, device=device)
    area = area.to(device)
    heights = (area * ratio).sqrt().round().long().clamp(1, h)
    widths = (area / ratio).sqrt().round().long().clamp(1, w)
    tops = (torch.rand(batch, len(area), generator=generator, device=device) * (h - heights + 1)).long()
    lefts = (torch.rand(batch, len(area), generator=generator, device=device) * (w - widths + 1)).long()
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    in_rows = (rows >= tops[..., None]) & (rows < (tops + heights)[..., None])
    in_cols = (cols >= lefts[..., None]) & (cols < (lefts + widths)[..., None])
    blocks = in_rows[..., :, None] & in_cols[..., None, :]
    return blocks.any(dim=1).reshape(batch, h * w)


def multiblock_mask(
    batch: int,
    grid: Grid,
    generator: torch.Generator,
    scales: tuple[float, ...] = (0.15, 0.7),
    counts: tuple[int, ...] = (8, 2),
    aspect: tuple[float, float] = (0.75, 1.5),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """V-JEPA multiblock 3-D mask ``(B, N)``: True = target token to predict, the context is its complement.

    ``counts[i]`` blocks of spatial area ``int(scales[i]·H'W')`` tokens; each block draws its aspect ratio
    ``a`` uniformly from ``aspect`` (as V-JEPA's code), has height ``round(√(area·a))`` and width
    ``round(√(area/a))`` clipped to the grid, a uniform position, and covers the same rectangle at every t'.
    The target is the union of all blocks. V-JEPA draws one block size per batch and treats each (scale, count)
    pair as its own mask; here every block draws its own ratio, and one call per pair gives V-JEPA's separate masks.

    Equal row counts (V-JEPA's collator trims every sample to the batch minimum): let ``k`` be the smallest target
    count in the batch, capped at ``N − 1`` so that every row keeps at least one context token; each row keeps
    ``k`` of its target tokens, chosen uniformly at random, and returns the rest to the context.
    """
    if len(scales) != len(counts) or not scales:
        raise UserError(f"multiblock scales {scales} and counts {counts} must pair up; give one count per scale")
    if not all(0.0 < s <= 1.0 for s in scales) or not all(c >= 1 for c in counts):
        raise UserError(f"multiblock scales must be in (0, 1] and counts >= 1, got {scales} and {counts}")
    if not 0.0 < aspect[0] <= aspect[1]:
        raise UserError(f"multiblock aspect range must satisfy 0 < min <= max, got {aspect}")
    t, h, w = grid
    n = t * h * w
    target = _block_union(batch, grid, generator, scales, counts, aspect)
    target = target[:, None, :].expand(batch, t, h * w).reshape(batch, n)
    keep = min(int(target.sum(dim=1).min()), n - 1)
    # Non-target tokens rank after every target token, so ranks below ``keep`` pick ``keep`` random targets.
    noise = torch.rand(batch, n, generator=generator, device=generator.device).masked_fill(~target, 2.0)
    return (noise.argsort(dim=1).argsort(dim=1) < keep).to(device)
