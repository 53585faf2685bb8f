"""The shared crop rule: sector bounding box, squared around its centre, black outside the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sector_video import sector_clip, sector_mask

from echobench.data.video_io import (
    SECTOR_THRESHOLD,
    Crop,
    crop_resize,
    mask_overlays,
    resize_frames,
    sector_box,
    working_crop,
)


def frames_with_box(top: int, bottom: int, left: int, right: int, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    """Three frames, black except a moving bright spot that sweeps the box over time (the max projection fills it)."""
    frames = np.zeros((3, *shape), np.uint8)
    frames[0, top:bottom, left] = 200
    frames[1, top, left:right] = 90
    frames[2, bottom - 1, right - 1] = 30
    frames[2, top:bottom, right - 1] = 30
    return frames


def test_sector_box_of_the_max_projection() -> None:
    assert sector_box(frames_with_box(10, 50, 20, 45)) == (10, 50, 20, 45)
    dim = frames_with_box(10, 50, 20, 45)
    dim[dim > 0] = SECTOR_THRESHOLD  # at the threshold is still background (compression noise)
    assert sector_box(dim) is None


def test_tall_box_is_widened_around_its_centre() -> None:
    # 40 rows x 25 columns: the square has side 40 and is centred on column (20 + 45) / 2.
    assert working_crop(frames_with_box(10, 50, 20, 45)) == Crop(top=10, left=12, side=40)


def test_wide_box_near_the_edge_reaches_outside_and_pads_black() -> None:
    frames = frames_with_box(0, 10, 0, 80)  # a 10 x 80 strip along the top edge
    crop = working_crop(frames)
    assert crop == Crop(top=-35, left=0, side=80)
    out = crop_resize(frames, crop, 80)
    np.testing.assert_array_equal(out[:, 35:45], frames[:, 0:10])
    assert out[:, :35].max() == 0 and out[:, 45:].max() == 0


def test_full_and_empty_frames() -> None:
    full = np.full((2, 112, 112), 100, np.uint8)
    assert working_crop(full) == Crop(0, 0, 112)  # EchoNet-style frames keep their own square
    assert working_crop(np.zeros((2, 30, 50), np.uint8)) == Crop(0, 10, 30)  # all black: centred square


@pytest.mark.parametrize("size", [16, 40])
def test_crop_resize_of_the_square_is_what_the_cache_stores(size: int) -> None:
    frames = frames_with_box(10, 50, 20, 45)
    crop = working_crop(frames)
    out = crop_resize(frames, crop, size)
    assert out.shape == (3, size, size)
    if size == 40:
        np.testing.assert_array_equal(out, frames[:, 10:50, 12:52])


def test_ecg_trace_and_text_outside_the_sector_are_masked_before_the_crop() -> None:
    height, width = 120, 160
    clean = sector_clip(4, height, width, np.random.default_rng(0))
    fan = sector_mask(height, width, width / 2, 2.0, 0.85 * height, np.radians(35.0))
    overlaid = clean.copy()
    # A green-channel ECG trace swept across the full width below the fan, and a text block in the top-left corner.
    trace_rows = (110 + 4 * np.sin(np.arange(width) / 6)).astype(int)
    for t in range(len(overlaid)):
        overlaid[t, trace_rows[: 40 * (t + 1)], np.arange(width)[: 40 * (t + 1)]] = 180
    overlaid[:, 3:9, 4:30] = 255
    assert not (fan[trace_rows, np.arange(width)].any() or fan[3:9, 4:30].any())

    crop = working_crop(overlaid)
    assert crop == working_crop(clean)
    rows, cols = np.flatnonzero(fan.any(axis=1)), np.flatnonzero(fan.any(axis=0))
    assert sector_box(overlaid) == (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    masked = mask_overlays(overlaid)
    np.testing.assert_array_equal(masked, clean)
    np.testing.assert_array_equal(resize_frames(overlaid, 32), resize_frames(clean, 32))


def test_enlarging_is_bilinear_and_shrinking_is_the_area_mean() -> None:
    ramp = np.tile((np.arange(8) * 32).astype(np.uint8), (8, 1))[None]  # columns 0, 32, …, 224
    up = crop_resize(ramp, Crop(0, 0, 8), 16)
    # Half-pixel bilinear 2×: output column j samples source x = (j + 0.5)/2 − 0.5, clamped at the borders.
    by_hand = [0, 8, 24, 40, 56, 72, 88, 104, 120, 136, 152, 168, 184, 200, 216, 224]
    assert up.dtype == np.uint8 and (up[0] == np.array(by_hand, np.uint8)).all()
    source = torch.from_numpy(ramp).double()[None]
    reference = F.interpolate(source, size=(16, 16), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(up[0], reference[0, 0].round().numpy().astype(np.uint8))
    # Not pixel replication (OpenCV's area interpolation when enlarging): neighbours 0, 8 differ.
    assert up[0, 0, 0] != up[0, 0, 1]

    image = np.random.default_rng(0).integers(0, 64, size=(2, 16, 16)).astype(np.uint8) * 4
    down = crop_resize(image, Crop(0, 0, 16), 8)
    # Multiples of 4, so every 2×2 mean is a whole grey level.
    block_means = image.reshape(2, 8, 2, 8, 2).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(down, block_means.astype(np.uint8))
