"""Synthetic native-resolution echo frames: a fan-shaped sector of speckle on a black, non-square canvas."""

from __future__ import annotations

import numpy as np


def sector_mask(height: int, width: int, apex_x: float, apex_y: float, radius: float, half_angle: float) -> np.ndarray:
    """Boolean ``(height, width)``: the pixels of the fan with its apex at ``(apex_x, apex_y)`` opening downwards."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xx - apex_x, yy - apex_y
    angle = np.abs(np.arctan2(dx, np.maximum(dy, 1e-9)))
    return (np.hypot(dx, dy) <= radius) & (dy >= 0) & (angle <= half_angle)


def sector_clip(frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``(frames, height, width)`` uint8: speckle (grey 40-220) in a 35-degree fan hanging from the top centre, a
    pulsing bright square in it, black everywhere else (the black margin a scanner leaves around the sector)."""
    mask = sector_mask(height, width, width / 2, 2.0, 0.85 * height, np.radians(35.0))
    clip = rng.integers(40, 221, size=(frames, height, width)).astype(np.uint8)
    cy, cx = height // 2, width // 2
    for t in range(frames):
        r = 2 + (t % 4)
        clip[t, cy - r : cy + r, cx - r : cx + r] = 250
    return np.where(mask[None], clip, 0).astype(np.uint8)
