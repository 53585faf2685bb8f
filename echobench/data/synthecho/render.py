"""SynthEcho B-mode image formation: a :class:`~anatomy.Scene` becomes grey ultrasound frames.

Pipeline (all vectorised over the whole clip, ``(T, H, W)``; the only Python loops run over frames or
structures, never pixels):

1. Echogenicity: anti-aliased cv2 rasterisation of the scene (tissue, then blood pools over it, then pericardium,
   valve leaflets and annuli) with smooth per-video texture.
2. Speckle: a complex Gaussian field, spatially correlated (wider laterally than axially, like a resolution cell)
   and slowly decorrelating in time; its magnitude is Rayleigh-distributed and multiplies the echogenicity.
3. Scanner: depth attenuation, lateral fall-off toward the sector edges, near-field clutter over the apex, gain,
   log compression to a per-video dynamic range, blur, and the black outside of the fan-shaped sector.
"""

from __future__ import annotations

import cv2
import numpy as np

from echobench.data.synthecho.anatomy import Scene, build_scene
from echobench.data.synthecho.physiology import FRAME_SIZE, Acquisition, VideoSpec

_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn at 1/16 pixel
_SCALE = 1 << _SHIFT

_BLOOD = 0.02
_BACKGROUND = 0.1
_TISSUE = 0.55
_PERICARDIUM = 1.1
_VALVE = 1.0
_BLACK_LEVEL = 3.0  # grey of the emptiest in-sector pixel: the sector stays non-zero in every frame
_NOISE_FLOOR = 0.004  # electronic noise, so blood pools are speckled dark grey rather than black


def _points(poly: np.ndarray) -> np.ndarray:
    return np.round(poly * _SCALE).astype(np.int32)


def _fill(polygons: list[np.ndarray], frames: int) -> np.ndarray:
    """Coverage in [0, 1] of the union of closed polygons ``(T, P, 2)``, anti-aliased, ``(T, H, W)``."""
    canvas = np.zeros((frames, FRAME_SIZE, FRAME_SIZE), np.uint8)
    pts = [_points(p) for p in polygons]
    for t in range(frames):
        for p in pts:
            cv2.fillPoly(canvas[t], [p[t]], 255, cv2.LINE_AA, _SHIFT)
    return np.multiply(canvas, np.float32(1 / 255), dtype=np.float32)


def _strokes(lines: list[np.ndarray], thickness: int, frames: int, dots: np.ndarray | None = None) -> np.ndarray:
    """Coverage of open polylines ``(T, P, 2)`` drawn ``thickness`` wide, plus optional dots ``(T, D, 2)``."""
    canvas = np.zeros((frames, FRAME_SIZE, FRAME_SIZE), np.uint8)
    pts = [_points(p) for p in lines]
    dot_pts = None if dots is None else _points(dots)
    for t in range(frames):
        cv2.polylines(canvas[t], [p[t] for p in pts], False, 255, thickness, cv2.LINE_AA, _SHIFT)
        if dot_pts is not None:
            for x, y in dot_pts[t]:
                cv2.circle(canvas[t], (int(x), int(y)), int(1.6 * _SCALE), 255, -1, cv2.LINE_AA, _SHIFT)
    return np.multiply(canvas, np.float32(1 / 255), dtype=np.float32)


def _blur_frames(clip: np.ndarray, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Gaussian blur of every frame of ``(T, H, W)`` float32."""
    out = np.empty_like(clip)
    for t in range(len(clip)):
        cv2.GaussianBlur(clip[t], (0, 0), sigmaX=sigma_x, sigmaY=sigma_y, dst=out[t], borderType=cv2.BORDER_REFLECT)
    return out


def _smooth_field(rng: np.random.Generator, cells: int) -> np.ndarray:
    """A static smooth random field ``(H, W)`` with unit standard deviation (cubic upsampling of a coarse grid)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def sector_geometry(acq: Acquisition) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel depth ``r`` (pixels from the probe), beam angle, and the sector mask, each ``(H, W)``."""
    y, x = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float32)
    dx, dy = x - (FRAME_SIZE - 1) / 2, y - acq.sector_apex_y
    depth = np.hypot(dx, dy)
    angle = np.arctan2(dx, dy)
    mask = (np.abs(angle) <= acq.sector_half_angle) & (depth <= acq.sector_radius) & (depth >= 1.0)
    return depth, angle, mask


def _speckle(rng: np.random.Generator, acq: Acquisition, frames: int) -> np.ndarray:
    """Rayleigh-like speckle magnitude ``(T, H, W)`` with E[S^2] = 1.

    The field is complex noise blurred by the resolution cell (white int8 noise: after the blur it is Gaussian to
    the eye and far cheaper to draw than normals), decorrelating over time as an AR(1) chain with
    ``speckle_memory`` per frame.
    """
    shape = (frames, 2, FRAME_SIZE, FRAME_SIZE)
    noise = np.frombuffer(rng.bytes(int(np.prod(shape))), np.int8).astype(np.float32).reshape(shape)
    rho = np.float32(acq.speckle_memory)
    fresh = np.float32(np.sqrt(1.0 - acq.speckle_memory**2))
    for t in range(1, frames):
        noise[t] *= fresh
        noise[t] += rho * noise[t - 1]
    field = _blur_frames(noise.reshape(2 * frames, FRAME_SIZE, FRAME_SIZE), acq.speckle_lateral, acq.speckle_axial)
    field = field.reshape(frames, 2, FRAME_SIZE * FRAME_SIZE)
    magnitude = cv2.magnitude(field[:, 0], field[:, 1]).reshape(frames, FRAME_SIZE, FRAME_SIZE)
    # numpy's pairwise sum, not BLAS: the result must not depend on the thread count of the process.
    magnitude *= np.float32(1.0 / np.sqrt(np.mean(np.square(magnitude))))
    return magnitude


def echogenicity(spec: VideoSpec, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Mean backscatter amplitude ``(T, H, W)`` of the scene before speckle and scanner processing."""
    frames = spec.frames
    acq = spec.acquisition
    background = _BACKGROUND * np.clip(1 + 0.45 * _smooth_field(rng, 6), 0.15, None)
    tissue_level = _TISSUE * acq.tissue_level * np.clip(1 + 0.2 * _smooth_field(rng, 9), 0.5, None)
    echo = np.broadcast_to(background, (frames, FRAME_SIZE, FRAME_SIZE)).copy()
    tissue = _fill(scene.tissue, frames)
    echo += (tissue_level - echo) * tissue
    pericardium = _strokes(scene.pericardium, 1, frames)
    echo += (_PERICARDIUM - echo) * pericardium
    blood = _fill(scene.cavities, frames)
    echo += (_BLOOD - echo) * blood
    valves = _strokes(list(scene.leaflets.transpose(1, 0, 2, 3)), 1, frames, dots=scene.annuli)
    echo += (_VALVE - echo) * valves
    return echo


def render_video(spec: VideoSpec, scene: Scene | None = None) -> np.ndarray:
    """Grey B-mode frames ``(T, 112, 112)`` uint8 of one video; zero outside the sector."""
    scene = build_scene(spec) if scene is None else scene
    acq = spec.acquisition
    rng = np.random.default_rng(acq.noise_seed)
    amplitude = echogenicity(spec, scene, rng)
    depth, angle, mask = sector_geometry(acq)
    attenuation = 10.0 ** (-acq.attenuation_db * depth / acq.sector_radius / 20.0)
    edges = 1.0 - 0.35 * np.clip(np.abs(angle) / acq.sector_half_angle, 0.0, 1.0) ** 4
    clutter = acq.clutter * np.exp(-depth / 14.0) * np.clip(1 + 0.5 * _smooth_field(rng, 5), 0, None)
    amplitude *= attenuation * edges
    amplitude += clutter + _NOISE_FLOOR
    amplitude *= _speckle(rng, acq, spec.frames)
    # Log compression: the top of the display range sits a fixed fraction of the dynamic range above tissue.
    flat = amplitude.reshape(-1, FRAME_SIZE)
    log_amp = cv2.log(flat + np.float32(1e-6)).reshape(amplitude.shape)
    top_db = -5.0 + 0.35 * acq.dynamic_range_db - acq.gain_db
    scale = np.float32(20.0 / np.log(10.0) / acq.dynamic_range_db)
    level = log_amp * scale + np.float32(1.0 - top_db / acq.dynamic_range_db)
    np.clip(level, 0.0, 1.0, out=level)
    grey = _blur_frames(level, acq.blur_sigma, acq.blur_sigma)
    grey *= np.float32(255.0 - _BLACK_LEVEL)
    grey += np.float32(_BLACK_LEVEL + 0.5)
    grey *= mask
    return grey.astype(np.uint8)


def polygon_masks(polygons: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """Pixels whose centres lie inside closed polygons ``(T, P, 2)`` (even-odd rule), ``(T, size, size)`` bool.

    Exact scanline rasterisation: every edge crossing a pixel row toggles "inside" for the pixel centres to the
    right of the crossing; a cumulative sum along the row then counts crossings. (cv2.fillPoly would also take
    every pixel the border touches, about half the perimeter too many.)
    """
    frames = len(polygons)
    x0, y0 = polygons[..., 0][:, None], polygons[..., 1][:, None]
    x1, y1 = np.roll(x0, -1, axis=2), np.roll(y0, -1, axis=2)
    rows = np.arange(size, dtype=np.float64)[None, :, None]
    crosses = (y0 <= rows) != (y1 <= rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = x0 + (rows - y0) * (x1 - x0) / (y1 - y0)
    t, r, e = np.nonzero(crosses)
    first = np.clip(np.floor(x[t, r, e]).astype(np.int64) + 1, 0, size)
    toggles = np.zeros((frames, size, size + 1), np.int32)
    np.add.at(toggles, (t, r, first), 1)
    return (np.cumsum(toggles, axis=2)[..., :size] % 2).astype(bool)


def lv_masks(spec: VideoSpec, scene: Scene | None = None) -> np.ndarray:
    """Ground-truth LV cavity masks ``(T, H, W)`` bool (pixel centres inside the cavity polygon)."""
    scene = build_scene(spec) if scene is None else scene
    return polygon_masks(scene.lv_cavity)
