"""MGMAE: Farneback token displacements of a translating pattern, exact warping, exact per-slice mask ratio, and
masks that move with the pattern."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from echobench.api import ClipBatch, SampleMeta
from echobench_plugins.mgmae import MGMAE, MGMAEConfig
from echobench_plugins.mgmae.motion import sample_along, token_displacement, top_k_per_slice, warp_from_base

PATCH, TUBELET, SIZE, FRAMES = 8, 2, 64, 8
SHIFT = 4  # pixels per frame to the right: one token (8 px) per tubelet slice


def translating_clip(seed: int = 0) -> np.ndarray:
    """uint8 frames ``(FRAMES, SIZE, SIZE)`` of a smooth texture moving SHIFT px right per frame (no wrap-around)."""
    rng = np.random.default_rng(seed)
    width = SIZE + SHIFT * FRAMES
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (SIZE, width)).astype(np.float32), (0, 0), 4.0)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    start = SHIFT * FRAMES
    return np.stack([texture[:, start - SHIFT * t : start - SHIFT * t + SIZE] for t in range(FRAMES)])


def test_farneback_token_displacement_recovers_a_known_shift() -> None:
    displacement = token_displacement(translating_clip(), TUBELET, PATCH)
    slices, grid = FRAMES // TUBELET, SIZE // PATCH
    assert displacement.shape == (2, slices, 2, grid, grid) and displacement.dtype == np.float32
    interior = (slice(1, -1), slice(1, -1))
    for t in range(1, slices):
        to_prev = displacement[0, t][(slice(None), *interior)]
        assert abs(np.median(to_prev[0]) + 1.0) < 0.15 and abs(np.median(to_prev[1])) < 0.15
    for t in range(slices - 1):
        to_next = displacement[1, t][(slice(None), *interior)]
        assert abs(np.median(to_next[0]) - 1.0) < 0.15 and abs(np.median(to_next[1])) < 0.15
    assert not displacement[0, 0].any() and not displacement[1, -1].any()


def test_warp_copies_values_along_an_integer_shift_and_fills_entering_tokens() -> None:
    noise = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    displacement = torch.zeros(1, 2, 3, 2, 4, 5)
    displacement[:, 0, 1:, 0] = -1.0  # content moves one token right per slice
    displacement[:, 1, :-1, 0] = 1.0
    warped = warp_from_base(noise, displacement, base=1)
    assert torch.equal(warped[:, 1], noise[:, 1])
    assert torch.allclose(warped[0, 2, :, 1:], noise[0, 1, :, :-1])
    assert torch.equal(warped[0, 2, :, 0], noise[0, 2, :, 0])  # entered from the left: its own noise
    assert torch.allclose(warped[0, 0, :, :-1], noise[0, 1, :, 1:])
    assert torch.equal(warped[0, 0, :, -1], noise[0, 0, :, -1])


def test_bilinear_sample_matches_a_hand_interpolation() -> None:
    source = torch.tensor([[[0.0, 10.0, 20.0], [30.0, 40.0, 50.0]]])
    displacement = torch.zeros(1, 2, 2, 3)
    displacement[0, 0, 0, 0], displacement[0, 1, 0, 0] = 0.25, 0.5  # (x, y) = (0.25, 0.5)
    displacement[0, 0, 1, 2] = 0.5  # x = 2.5: outside
    out = sample_along(source, displacement, torch.full((1, 2, 3), -1.0))
    expected = 0.5 * (0.75 * 0.0 + 0.25 * 10.0) + 0.5 * (0.75 * 30.0 + 0.25 * 40.0)
    assert torch.isclose(out[0, 0, 0], torch.tensor(expected))
    assert out[0, 1, 2] == -1.0 and out[0, 1, 1] == 40.0


def test_top_k_keeps_the_codes_visible_count_exact_per_slice() -> None:
    values = torch.rand(3, 4, 5, 6, generator=torch.Generator().manual_seed(1))
    mask = top_k_per_slice(values, 0.9)
    per_slice = mask.reshape(3, 4, 30).sum(dim=-1)
    # MGMAE's code keeps int(30·(1 − 0.9)) = int(2.9999999999999996) = 2 visible: 28 masked (VideoMAE's rule: 27).
    assert (per_slice == 28).all()
    assert (top_k_per_slice(values, 0.9, "masked").reshape(3, 4, 30).sum(dim=-1) == 27).all()
    flat = values.reshape(3, 4, 30)
    hidden_min = flat.masked_fill(~mask.reshape(3, 4, 30), 2.0).amin(dim=-1)
    shown_max = flat.masked_fill(mask.reshape(3, 4, 30), -1.0).amax(dim=-1)
    assert (hidden_min > shown_max).all()


def test_masks_follow_a_translating_pattern() -> None:
    config = MGMAEConfig(
        model="vit_tiny", frames=FRAMES, stride=1, size=SIZE, patch=PATCH, tubelet=TUBELET, mask_ratio=0.5, base="first"
    )
    torch.manual_seed(0)
    method = MGMAE(config)
    frames = torch.from_numpy(translating_clip(seed=3))[None]
    extras = method.prepare_sample(frames, np.arange(FRAMES)[None], SampleMeta("v", 50.0, (0, 1), 0))
    clips = torch.zeros(1, 1, FRAMES, SIZE, SIZE)
    batch = ClipBatch(
        views=[clips],
        frame_indices=torch.zeros(1, 1, FRAMES),
        fps=torch.tensor([50.0]),
        video_ids=["v"],
        extras={"displacement": extras["displacement"][None]},
    )
    slices, grid = FRAMES // TUBELET, SIZE // PATCH
    mask = method.draw_mask(batch).reshape(slices, grid, grid)
    assert (mask.reshape(slices, -1).sum(dim=1) == int(0.5 * grid * grid)).all()
    for t in range(1, slices):
        # Column j at slice t shows column j − t of slice 0; the column next to the entering edge is left out, as
        # Farneback's flow is least accurate there. Agreement is not perfect: each slice masks its own top half,
        # and the values entering and leaving the view move that threshold.
        moved = (mask[t, :, t + 1 :] == mask[0, :, 1 : grid - t]).float().mean()
        static = (mask[t, :, t + 1 :] == mask[0, :, t + 1 :]).float().mean()
        assert moved >= 0.8, (t, moved)
        assert static < moved - 0.25, (t, static, moved)


def test_draw_mask_counts_follow_the_codes_rounding_by_default() -> None:
    slices, grid = FRAMES // TUBELET, SIZE // PATCH
    batch = ClipBatch(
        views=[torch.zeros(2, 1, FRAMES, SIZE, SIZE)],
        frame_indices=torch.zeros(2, 1, FRAMES),
        fps=torch.tensor([50.0, 50.0]),
        video_ids=["a", "b"],
        extras={"displacement": torch.zeros(2, 2, slices, 2, grid, grid)},
    )
    geometry = {"model": "vit_tiny", "frames": FRAMES, "stride": 1, "size": SIZE, "patch": PATCH, "tubelet": TUBELET}
    # 64 tokens per slice at 0.9: the code keeps int(64·0.09999999999999998) = 6 visible (58 masked); int(0.9·64) = 57.
    for rounding, masked in (("visible", 58), ("masked", 57)):
        config = MGMAEConfig(**geometry, mask_ratio=0.9, mask_rounding=rounding)  # type: ignore[arg-type]
        assert MGMAEConfig(**geometry).mask_rounding == "visible"
        torch.manual_seed(0)
        mask = MGMAE(config).draw_mask(batch)
        assert (mask.reshape(2, slices, -1).sum(dim=-1) == masked).all()
