"""Mask generators and token gathering.

Masks are boolean ``(B, N)`` over t-major tokens, True = masked (hidden from the encoder). Every generator
masks the same number of tokens in every row, so visible tokens gather to a dense ``(B, N_vis, D)``.

Randomness comes only from the ``torch.Generator`` passed in: noise is drawn on the generator's device and the
mask is then moved to ``device``, so a seed gives the same mask on every device.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

from echobench.errors import UserError

Grid = tuple[int, int, int]


#: Which count of a mask is rounded down to an integer when ``ratio·n`` is not one. ``"masked"`` masks
#: ``int(ratio·n)`` tokens (code: MCG-NJU/VideoMAE masking_generator.py ``TubeMaskingGenerator``). ``"visible"``
#: keeps ``int(n·(1 − ratio))`` tokens visible and masks the rest (code: MCG-NJU/MGMAE engine_for_mgmae.py
#: ``get_build_mask_volume_func``; m1dsolo/EchoCardMAE utils.py ``random_mask_in_roi``): one more masked token
#: whenever ``ratio·n`` is fractional.
MaskRounding = Literal["masked", "visible"]


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise UserError(f"mask ratio must be in [0, 1), got {ratio}; set a ratio such as 0.75 or 0.9")


def masked_count(n: int, ratio: float, rounding: MaskRounding = "masked") -> int:
    """Tokens to mask out of ``n`` at ``ratio`` under ``rounding`` (:data:`MaskRounding`), in float64 as Python's
    ``int(·)`` of the authors' expressions: 0.75 of 49 masks 36 (``"masked"``) or 37 (``"visible"``), 0.9 of 196
    masks 176 or 177. A rounding that would leave no token visible is a :class:`UserError`."""
    _check_ratio(ratio)
    if rounding == "masked":
        return int(ratio * n)
    if rounding != "visible":
        raise UserError(f"mask rounding must be 'masked' or 'visible', got {rounding!r}")
    masked = n - int(n * (1 - ratio))
    if n > 0 and masked == n:
        raise UserError(
            f"mask ratio {ratio} keeps int({n}·(1 − {ratio})) = 0 of {n} tokens visible; lower the mask ratio"
        )
    return masked


def _masked_counts(counts: torch.Tensor, ratio: float, rounding: MaskRounding) -> torch.Tensor:
    """:func:`masked_count` elementwise over integer ``counts`` (float64, so equal to Python's ``int(·)``)."""
    if rounding == "masked":
        return (ratio * counts.double()).floor().long()
    if rounding != "visible":
        raise UserError(f"mask rounding must be 'masked' or 'visible', got {rounding!r}")
    return counts - (counts.double() * (1 - ratio)).floor().long()


def _random_ranks(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation rank ``0 … L−1`` along the last axis, independently per leading index."""
    noise = torch.rand(shape, generator=generator, device=generator.device)
    return noise.argsort(dim=-1).argsort(dim=-1)


def tube_mask(
    batch: int,
    grid: Grid,
    ratio: float,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    rounding: MaskRounding = "masked",
) -> torch.Tensor:
    """VideoMAE tube masking: :func:`masked_count` of the ``H'W'`` spatial positions per sample (``int(ratio·H'W')``
    by default, as VideoMAE's code), masked at every t'."""
    t, h, w = grid
    spatial = _random_ranks((batch, 1, h * w), generator) < masked_count(h * w, ratio, rounding)
    return spatial.expand(batch, t, h * w).reshape(batch, t * h * w).to(device)


def random_mask(
    batch: int,
    num_tokens: int,
    ratio: float,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    rounding: MaskRounding = "masked",
) -> torch.Tensor:
    """:func:`masked_count` of the ``N`` tokens (``int(ratio·N)`` by default) masked uniformly at random per sample."""
    return (_random_ranks((batch, num_tokens), generator) < masked_count(num_tokens, ratio, rounding)).to(device)


def framewise_random_mask(
    batch: int,
    grid: Grid,
    ratio: float,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    rounding: MaskRounding = "masked",
) -> torch.Tensor:
    """An independent random subset of :func:`masked_count` of the ``H'W'`` positions per t' (``int(ratio·H'W')`` by
    default; Temporal MAE Eq. 1)."""
    t, h, w = grid
    per_frame = _random_ranks((batch, t, h * w), generator) < masked_count(h * w, ratio, rounding)
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
    rounding: MaskRounding = "masked",
) -> KeyAreaMask:
    """Random masking among ``candidates`` ``(B, N)`` (True = may be encoded/reconstructed) only.

    Equal row counts: within each group (each t' when ``per_frame``, else the whole clip) let ``k`` be the
    *smallest* candidate count across the batch. Every sample masks ``m =`` :func:`masked_count` ``(k, ratio,
    rounding)`` (``int(ratio·k)``, or ``k − int(k·(1 − ratio))`` for ``rounding="visible"``, EchoCardMAE's code) and
    keeps ``k − m`` visible tokens, both drawn uniformly from its own candidates; a sample's surplus candidates
    (beyond ``k``, also chosen at random) join the background. The ratio therefore holds exactly per group and
    sample, and a batch whose sector sizes agree (or a fixed ROI) loses nothing.
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
    num_masked = _masked_counts(keep, ratio, rounding)
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


class MultiblockMask(NamedTuple):
    """One V-JEPA mask generator's split of a batch's tokens (code: facebookresearch/jepa src/masks/multiblock3d.py).

    ``context`` ``(B, N)`` bool: the tokens the context encoder sees. ``predicted`` ``(B, N)`` bool: the tokens the
    predictor predicts. Each has one count in every row; ``context & predicted`` is empty, and ``context |
    predicted`` lacks the tokens trimming dropped (:attr:`dropped`). ``blocks`` ``(B, K, 4)`` long: every block's
    spatial rectangle ``(top, left, height, width)`` as drawn, before trimming; each block spans all t'.
    """

    context: torch.Tensor
    predicted: torch.Tensor
    blocks: torch.Tensor

    @property
    def dropped(self) -> torch.Tensor:
        """Tokens cut by trimming: neither seen by the context encoder nor predicted."""
        return ~(self.context | self.predicted)


#: Redraws of a row whose blocks cover its whole frame before UserError (V-JEPA's collator redraws without bound).
_MAX_BLOCK_DRAWS = 100


def multiblock_block_size(grid: Grid, scale: float, ratio: float) -> tuple[int, int]:
    """Height and width of a block of spatial scale ``scale`` and aspect ratio ``ratio`` (height / width).

    ``area = int(H'·W'·scale)``, height ``min(round(√(area·ratio)), H')``, width ``min(round(√(area/ratio)), W')``,
    Python's ``round`` (code: facebookresearch/jepa src/masks/multiblock3d.py, ``_MaskGenerator._sample_block_size``).
    """
    _, h, w = grid
    area = int(h * w * scale)
    return min(round(math.sqrt(area * ratio)), h), min(round(math.sqrt(area / ratio)), w)


def check_multiblock(grid: Grid, scale: float, count: int, aspect: tuple[float, float]) -> None:
    """UserError unless every aspect ratio in ``aspect`` gives a non-empty block smaller than the frame.

    A block as large as the frame leaves no context token, whatever its position, so V-JEPA's collator would
    redraw it forever. Height grows and width shrinks with the ratio, so the extremes of ``aspect`` bound both.
    """
    if not 0.0 < scale <= 1.0 or count < 1:
        raise UserError(f"multiblock scale must be in (0, 1] and count >= 1, got scale {scale} and count {count}")
    low, high = aspect
    if not 0.0 < low <= high:
        raise UserError(f"multiblock aspect range must satisfy 0 < min <= max, got {aspect}")
    _, h, w = grid
    if min(multiblock_block_size(grid, scale, low)[0], multiblock_block_size(grid, scale, high)[1]) < 1:
        raise UserError(
            f"multiblock scale {scale} with aspect {aspect} gives an empty block on the {h}x{w} token frame; "
            "raise the scale or narrow the aspect range"
        )
    area = int(h * w * scale)
    # round(√(area·a)) reaches H' once a >= (H' − ½)²/area; round(√(area/a)) reaches W' while a <= area/(W' − ½)².
    if max(low, (h - 0.5) ** 2 / area) <= min(high, area / (w - 0.5) ** 2):
        raise UserError(
            f"multiblock scale {scale} with aspect {aspect} can draw a block covering the whole {h}x{w} token "
            "frame, which leaves no context token; lower the scale or narrow the aspect range"
        )


def _block_positions(
    rows: int, count: int, grid: Grid, size: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """``(rows, count, 4)`` rectangles ``(top, left, height, width)`` of size ``size`` at uniform positions."""
    _, h, w = grid
    height, width = size
    device = generator.device
    tops = torch.randint(0, h - height + 1, (rows, count), generator=generator, device=device)
    lefts = torch.randint(0, w - width + 1, (rows, count), generator=generator, device=device)
    return torch.stack([tops, lefts, torch.full_like(tops, height), torch.full_like(tops, width)], dim=-1)


def block_union(blocks: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Spatial union ``(B, H'·W')`` of rectangles ``(B, K, 4)`` = ``(top, left, height, width)``, row-major."""
    _, h, w = grid
    top, left, height, width = blocks.unbind(dim=-1)
    rows = torch.arange(h, device=blocks.device)
    cols = torch.arange(w, device=blocks.device)
    in_rows = (rows >= top[..., None]) & (rows < (top + height)[..., None])
    in_cols = (cols >= left[..., None]) & (cols < (left + width)[..., None])
    return (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1).reshape(blocks.shape[0], h * w)


def _first(selected: torch.Tensor, keep: int) -> torch.Tensor:
    """The first ``keep`` selected tokens of each row in t-major order (the collator's ``indices[:min_keep]``)."""
    return selected & (selected.cumsum(dim=1) <= keep)


def multiblock_split(blocks: torch.Tensor, grid: Grid) -> MultiblockMask:
    """Context and predicted set of drawn blocks ``(B, K, 4)`` spanning all t', trimmed as V-JEPA's collator.

    The predicted set of a row is every token of its blocks' union, the context every other token. Each is then
    cut *separately* to its smallest count in the batch, keeping a row's first tokens in t-major order (code:
    facebookresearch/jepa src/masks/multiblock3d.py, ``_MaskGenerator.__call__``: ``cm[:min_keep_pred]`` and
    ``cm[:min_keep_enc]`` of the sorted index lists), so the cut tokens lie at a row's last t'. A token cut from
    the predicted set is dropped, never handed to the context: the context holds no token of any block.
    """
    t, h, w = grid
    union = block_union(blocks, grid)
    target = union[:, None, :].expand(union.shape[0], t, h * w).reshape(union.shape[0], t * h * w)
    outside = ~target
    predicted = _first(target, int(target.sum(dim=1).min()))
    context = _first(outside, int(outside.sum(dim=1).min()))
    return MultiblockMask(context, predicted, blocks)


def multiblock_mask(
    batch: int,
    grid: Grid,
    generator: torch.Generator,
    scale: float = 0.15,
    count: int = 8,
    aspect: tuple[float, float] = (0.75, 1.5),
    device: torch.device | str | None = None,
) -> MultiblockMask:
    """One V-JEPA multiblock 3-D mask generator (one ``(spatial_scale, num_blocks)`` entry of V-JEPA's ``mask``
    config) on a batch: ``count`` blocks per row, split by :func:`multiblock_split`.

    As the collator (code: facebookresearch/jepa src/masks/multiblock3d.py, ``_MaskGenerator``): one aspect ratio
    is drawn uniformly from ``aspect`` per call, so every block of the batch has the size
    :func:`multiblock_block_size` gives; each block then draws a uniform position and spans all t' (the video
    configs' ``temporal_scale`` (1.0, 1.0); shorter blocks, ``max_temporal_keep`` < 1 and ``max_keep`` are not
    supported). A row whose blocks cover its whole frame, leaving no context, redraws its positions (the
    collator's ``while empty_context`` loop, here at most 100 times, then UserError). Geometries that can never
    leave a context token are rejected by :func:`check_multiblock`.
    """
    check_multiblock(grid, scale, count, aspect)
    low, high = aspect
    ratio = low + (high - low) * float(torch.rand((), generator=generator, device=generator.device))
    size = multiblock_block_size(grid, scale, ratio)
    blocks = _block_positions(batch, count, grid, size, generator)
    full = block_union(blocks, grid).all(dim=1)
    for _ in range(_MAX_BLOCK_DRAWS):
        if not bool(full.any()):
            break
        blocks[full] = _block_positions(int(full.sum()), count, grid, size, generator)
        full = block_union(blocks, grid).all(dim=1)
    if bool(full.any()):
        raise UserError(
            f"{count} multiblock blocks of {size[0]}x{size[1]} tokens covered the whole {grid[1]}x{grid[2]} frame "
            f"in {_MAX_BLOCK_DRAWS} redraws, leaving no context; lower the block count or scale"
        )
    split = multiblock_split(blocks, grid)
    return MultiblockMask(split.context.to(device), split.predicted.to(device), split.blocks.to(device))
