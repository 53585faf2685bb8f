"""V-JEPA's multiblock masks as V-JEPA's collator (facebookresearch/jepa ``src/masks/multiblock3d.py``), checked
against an independent NumPy recomputation from the drawn block rectangles: the context never holds a token of
any block, the predicted set and the context are trimmed separately to equal row counts, trimmed targets are
dropped, and blocks span all t'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echobench.errors import UserError
from echobench.models.masking import MultiblockMask, multiblock_block_size, multiblock_mask, multiblock_split

#: V-JEPA's two mask configs (configs/pretrain/vitl16.yaml): (spatial scale, number of blocks).
VJEPA_CONFIGS = [(0.15, 8), (0.7, 2)]
ASPECT = (0.75, 1.5)


def reference_union(blocks: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """``(B, T'·H'·W')`` bool: every token inside one of a row's rectangles ``(top, left, height, width)``, at
    every t' (the block's spatial rectangle repeated over time)."""
    t, h, w = grid
    union = np.zeros((blocks.shape[0], h, w), dtype=bool)
    for row, rectangles in enumerate(blocks):
        for top, left, height, width in rectangles:
            union[row, top : top + height, left : left + width] = True
    return np.repeat(union.reshape(-1, 1, h * w), t, axis=1).reshape(blocks.shape[0], t * h * w)


def possible_sizes(grid: tuple[int, int, int], scale: float) -> set[tuple[int, int]]:
    """Block sizes the collator's formula gives over a dense sweep of the aspect range (NumPy, half-to-even)."""
    _, h, w = grid
    area = int(h * w * scale)
    ratios = np.linspace(ASPECT[0], ASPECT[1], 20001)
    heights = np.minimum(np.round(np.sqrt(area * ratios)), h).astype(int)
    widths = np.minimum(np.round(np.sqrt(area / ratios)), w).astype(int)
    return set(zip(heights.tolist(), widths.tolist(), strict=True))


def check_batch(masks: MultiblockMask, grid: tuple[int, int, int], batch: int, count: int, scale: float) -> int:
    """Every rule of the collator on one batch; returns the tokens per row dropped by trimming."""
    t, h, w = grid
    blocks = masks.blocks.numpy()
    assert blocks.shape == (batch, count, 4)
    size = {(int(a), int(b)) for a, b in blocks[..., 2:].reshape(-1, 2)}
    assert len(size) == 1 and size <= possible_sizes(grid, scale)  # one block size per batch
    height, width = size.pop()
    assert (blocks[..., 0] >= 0).all() and (blocks[..., 0] + height <= h).all()
    assert (blocks[..., 1] >= 0).all() and (blocks[..., 1] + width <= w).all()
    union = reference_union(blocks, grid)
    context, predicted = masks.context.numpy(), masks.predicted.numpy()
    assert not (context & union).any()  # no context token inside any block
    assert not (predicted & ~union).any()  # predicted ⊂ union of the row's blocks
    assert not (context & predicted).any()
    # Each is cut separately to the batch's smallest count, keeping a row's first tokens in t-major order.
    keep_predicted = int(union.sum(axis=1).min())
    keep_context = int((~union).sum(axis=1).min())
    assert keep_predicted % t == 0 and keep_context % t == 0  # blocks span all t'
    assert keep_context >= t  # every row's blocks leave an (i, j) free, so it keeps context tokens
    for row in range(batch):
        assert np.array_equal(np.flatnonzero(predicted[row]), np.flatnonzero(union[row])[:keep_predicted])
        assert np.array_equal(np.flatnonzero(context[row]), np.flatnonzero(~union[row])[:keep_context])
    dropped = masks.dropped.numpy().sum(axis=1)
    assert (dropped == t * h * w - keep_predicted - keep_context).all()
    # The rows that set the minimum keep their blocks whole: the same (i, j) at every t'.
    smallest = union.sum(axis=1) == keep_predicted
    assert np.array_equal(predicted[smallest], union[smallest])
    return int(dropped[0])


@pytest.mark.parametrize("grid", [(8, 14, 14), (4, 8, 8)])
@pytest.mark.parametrize("scale, count", VJEPA_CONFIGS)
def test_refcheck_200_batches_no_context_token_inside_a_block(grid, scale, count) -> None:
    sizes, dropped = set(), []
    for seed in range(200):
        masks = multiblock_mask(8, grid, torch.Generator().manual_seed(seed), scale, count, ASPECT)
        dropped.append(check_batch(masks, grid, 8, count, scale))
        sizes.add(tuple(masks.blocks[0, 0, 2:].tolist()))
    assert len(sizes) > 1  # the aspect ratio is drawn anew per batch
    assert max(dropped) > 0  # trimming happens at these geometries, so the rule above was exercised


def test_hand_made_split_counts() -> None:
    # Grid (2, 3, 4): 12 tokens per t'. Row 0: both 2x2 blocks at (0, 0), union {0, 1, 4, 5}; row 1: blocks at
    # (0, 0) and (1, 2), union {0, 1, 4, 5} ∪ {6, 7, 10, 11}.
    blocks = torch.tensor([[[0, 0, 2, 2], [0, 0, 2, 2]], [[0, 0, 2, 2], [1, 2, 2, 2]]])
    masks = multiblock_split(blocks, (2, 3, 4))
    # Predicted: 2·4 = 8 and 2·8 = 16 → 8 each; context: 2·8 = 16 and 2·4 = 8 → 8 each; 8 dropped per row.
    expected_predicted = [[0, 1, 4, 5, 12, 13, 16, 17], [0, 1, 4, 5, 6, 7, 10, 11]]
    expected_context = [[2, 3, 6, 7, 8, 9, 10, 11], [2, 3, 8, 9, 14, 15, 20, 21]]
    expected_dropped = [[14, 15, 18, 19, 20, 21, 22, 23], [12, 13, 16, 17, 18, 19, 22, 23]]
    for row in range(2):
        assert masks.predicted[row].nonzero().flatten().tolist() == expected_predicted[row]
        assert masks.context[row].nonzero().flatten().tolist() == expected_context[row]
        assert masks.dropped[row].nonzero().flatten().tolist() == expected_dropped[row]


@pytest.mark.parametrize(
    "scale, ratio, size",
    [
        # area int(196·0.15) = 29: round(√(29·0.75)) = round(4.66), round(√(29/0.75)) = round(6.22)
        (0.15, 0.75, (5, 6)),
        (0.15, 1.5, (7, 4)),  # round(6.60), round(4.40)
        # area int(196·0.7) = 137: round(10.14), round(13.52) = 14; round(14.34) = 14, round(9.56)
        (0.7, 0.75, (10, 14)),
        (0.7, 1.5, (14, 10)),
    ],
)
def test_block_size_by_hand_at_vjepa_geometry(scale, ratio, size) -> None:
    assert multiblock_block_size((8, 14, 14), scale, ratio) == size


def test_rows_whose_blocks_cover_the_frame_redraw_and_hopeless_geometries_are_user_errors() -> None:
    # Four 1x1 blocks on a 2x2 frame cover it with probability 4!/4⁴ ≈ 0.09 per row: those rows redraw.
    for seed in range(20):
        masks = multiblock_mask(8, (1, 2, 2), torch.Generator().manual_seed(seed), 0.25, 4, ASPECT)
        union = reference_union(masks.blocks.numpy(), (1, 2, 2))
        assert not union.all(axis=1).any() and bool(masks.context.any(dim=1).all())
    # 64 such blocks leave a cell free with probability ≈ 4·(3/4)^64 ≈ 4e-8 per draw.
    with pytest.raises(UserError, match=r"covered the whole 2x2 frame in 100 redraws"):
        multiblock_mask(1, (1, 2, 2), torch.Generator().manual_seed(0), 0.25, 64, ASPECT)
