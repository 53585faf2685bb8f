"""Plane geometry of LV tracings: polygon area and rasterised masks."""

from __future__ import annotations

import cv2
import numpy as np


def lv_area(polygon: np.ndarray) -> float:
    """Area (pixels²) enclosed by a polygon ``(P, 2)`` of ``(x, y)`` points (shoelace formula)."""
    x, y = np.asarray(polygon, dtype=np.float64).T
    twice = np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) + x[-1] * y[0] - x[0] * y[-1]
    return float(0.5 * abs(twice))


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the pixels inside (or on the border of) a polygon of ``(x, y)`` points.

    Vertices are rounded to the nearest pixel; cv2.fillPoly includes the border pixels.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.rint(np.asarray(polygon, dtype=np.float64)).astype(np.int32)], 1)
    return mask.astype(bool)


def ed_es_frames(frames: dict[int, np.ndarray]) -> tuple[int, int]:
    """(ED, ES) = (larger-area, smaller-area) traced frame of ``frame -> LV polygon``; (-1, -1) with fewer than two
    traced frames."""
    if len(frames) < 2:
        return -1, -1
    areas = {frame: lv_area(polygon) for frame, polygon in frames.items()}
    return max(areas, key=areas.__getitem__), min(areas, key=areas.__getitem__)
