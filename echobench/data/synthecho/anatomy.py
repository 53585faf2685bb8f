"""SynthEcho anatomy: per-frame outlines of every structure of the apical four-chamber view.

Built around the LV model of :mod:`physiology` (its cavity outline is the ground-truth LV), in the heart frame
``(u, n)`` and mapped to image coordinates at the end: LV and RV walls (outward offsets of the cavities along their
normals, thickening in systole except in an akinetic segment), the atria hanging from the moving valve planes, the
mitral and tricuspid leaflets opening with the filling flow, and the pericardium.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from echobench.data.synthecho.physiology import (
    LVState,
    VideoSpec,
    bullet_profile,
    lv_outline_heart,
    smoothstep,
    to_image,
)

_OUTLINE_SAMPLES = 40
_SYSTOLIC_THICKENING = 1.5
_RV_APEX = 0.28
_RV_WALL = 0.45
_ATRIAL_WALL = 0.35
_LEAFLET_CLOSED, _LEAFLET_OPEN = 0.3, -1.25


@dataclass(frozen=True)
class Scene:
    """Image-space geometry of one video; every array has the frame axis first.

    ``tissue`` and ``cavities`` are closed polygons ``(T, P, 2)`` (tissue painted first, blood pools over it),
    ``pericardium`` open polylines, ``leaflets`` segments ``(T, 4, 2, 2)``, ``annuli`` points ``(T, 4, 2)``.
    ``lv_cavity`` is the ground-truth LV cavity (closed by the mitral plane).
    """

    tissue: list[np.ndarray]
    cavities: list[np.ndarray]
    pericardium: list[np.ndarray]
    leaflets: np.ndarray
    annuli: np.ndarray
    lv_cavity: np.ndarray


def _outward_normals(u: np.ndarray, n: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals of curves ``(T, P)``; ``sign`` +1 for curves with the region on their right in (u, n)."""
    du, dn = np.gradient(u, axis=1), np.gradient(n, axis=1)
    norm = np.hypot(du, dn) + 1e-9
    return -sign * dn / norm, sign * du / norm


def _interp_rows(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Row-wise ``np.interp`` for ``(T, ...)`` arrays (``xp`` made non-decreasing per row)."""
    xp = np.maximum.accumulate(xp, axis=1)
    return np.stack([np.interp(x[t], xp[t], fp[t]) for t in range(len(x))])


def _ellipse(
    u_top: np.ndarray, u_bottom: float, centre_n: np.ndarray, half_width: np.ndarray, pad: float
) -> tuple[np.ndarray, np.ndarray]:
    """A chamber hanging from a valve plane: an ellipse reaching 10 % above ``u_top``, cut flat at the plane."""
    psi = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
    half_height = 0.55 * (u_bottom - u_top)
    centre_u = u_bottom - half_height
    u = centre_u[:, None] + (half_height[:, None] + pad) * np.cos(psi)
    n = centre_n[:, None] + (half_width[:, None] + pad) * np.sin(psi)
    return np.maximum(u, (u_top - 0.6 * pad)[:, None]), n


@dataclass(frozen=True)
class _Ventricle:
    """A ventricle in the heart frame: cavity outline ``(u, n)`` and outer (epicardial) outline, ``(T, P)``."""

    u: np.ndarray
    n: np.ndarray
    outer_u: np.ndarray
    outer_n: np.ndarray


def _left_ventricle(spec: VideoSpec) -> tuple[_Ventricle, LVState]:
    """LV cavity (septal base -> apex -> lateral base) and its wall: thicker septum, thinner apex, thickening
    with the local inward motion (so an akinetic segment does not thicken)."""
    u, n, state = lv_outline_heart(spec, _OUTLINE_SAMPLES)
    s = state.s
    m_sept, m_lat = spec.wall_motion(s)
    base = spec.wall_px * (0.75 + 0.25 * smoothstep(s / 0.3))
    thickening = _SYSTOLIC_THICKENING * state.contraction[:, None]
    h_sept = 1.05 * base[None] * (1 + thickening * m_sept[None])
    h_lat = base[None] * (1 + thickening * m_lat[None])
    h_apex = 0.7 * spec.wall_px * (1 + thickening)
    h = np.concatenate([h_sept[:, ::-1], h_apex, h_lat], axis=1)
    nu, nn = _outward_normals(u, n, 1.0)
    return _Ventricle(u, n, u + h * nu, n + h * nn), state


def _right_ventricle(spec: VideoSpec, septum_u: np.ndarray, septum_n: np.ndarray, relax: np.ndarray) -> _Ventricle:
    """RV from its apex (below the LV apex) to the tricuspid annulus, bounded by the septum's RV face
    (``septum_*``: the LV's septal epicardium, apex -> base). Traversed apex -> base along the free wall, then
    back along the septum."""
    l_ed = spec.length_px
    shortening = spec.patient.rv_shortening
    u_tv = l_ed * 0.96 - 0.7 * shortening * l_ed * relax
    s = np.linspace(0.0, 1.0, _OUTLINE_SAMPLES) ** 1.5
    u = _RV_APEX * l_ed + s[None] * (u_tv[:, None] - _RV_APEX * l_ed)
    septal = _interp_rows(u, septum_u, septum_n)
    width = spec.patient.rv_width * spec.diameter_px * (1 - shortening * relax)
    free = septal - width[:, None] * bullet_profile(s, peak=0.85, neck=0.1)[None]
    fu, fn = _outward_normals(u, free, -1.0)
    wall = _RV_WALL * spec.wall_px
    return _Ventricle(
        u=np.concatenate([u, u[:, ::-1]], 1),
        n=np.concatenate([free, septal[:, ::-1]], 1),
        outer_u=np.concatenate([u + wall * fu, septum_u[:, ::-1]], 1),
        outer_n=np.concatenate([free + wall * fn, septum_n[:, ::-1]], 1),
    )


def _leaflets(spec: VideoSpec, hinges: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Tips ``(T, 4, 2)`` of the anterior/posterior mitral and septal/anterior tricuspid leaflets, hinged at
    ``hinges`` ``(T, 4, 2)``: they swing from closed (bowed into the atrium) to open (toward the apex) with the
    inflow. ``widths`` ``(T, 2)`` are the mitral and tricuspid orifices."""
    beta = _LEAFLET_CLOSED + (_LEAFLET_OPEN - _LEAFLET_CLOSED) * spec.cycle.inflow(spec.times)
    lengths = widths[:, [0, 0, 1, 1]] * np.array([0.6, 0.42, 0.5, 0.55])
    sides = np.array([1.0, -1.0, -1.0, 1.0])
    direction = np.stack([np.repeat(np.sin(beta)[:, None], 4, 1), np.cos(beta)[:, None] * sides], axis=-1)
    return hinges + lengths[..., None] * direction


def build_scene(spec: VideoSpec) -> Scene:
    """Outlines of all structures for every frame of ``spec``."""
    relax = 1.0 - spec.cycle.volume(spec.times)
    k = _OUTLINE_SAMPLES
    lv, state = _left_ventricle(spec)
    rv = _right_ventricle(spec, lv.outer_u[:, k::-1], lv.outer_n[:, k::-1], relax)
    image = partial(to_image, spec)

    # Painted LV blood runs a few pixels past the mitral plane so it merges with the LA cavity.
    length = state.length[:, None]
    w_sept, w_lat = state.septal[:, -1:], state.lateral[:, -1:]
    paint_u = np.concatenate([lv.u, length + 3, length + 3], axis=1)
    paint_n = np.concatenate([lv.n, 0.9 * w_lat, -0.9 * w_sept], axis=1)

    # Atria hang from the valve planes; their far walls stay put, so they fill while the ventricles empty.
    l_ed, d_ed, la_size = spec.length_px, spec.diameter_px, spec.patient.la_size
    u_tv = rv.u[:, k - 1]
    la_half = 0.42 * d_ed * la_size * (1 + 0.06 * relax)
    la_n = np.full_like(relax, 0.1 * d_ed)
    atrial_wall = _ATRIAL_WALL * spec.wall_px
    ra_half = 0.38 * d_ed * la_size * (1 + 0.06 * relax)
    ra_n = la_n - la_half - 2 * atrial_wall - ra_half
    la_bottom, ra_bottom = l_ed * (1 + 0.5 * la_size), l_ed * (1 + 0.45 * la_size)

    hinges = np.stack([lv.u[:, [0, -1]], lv.n[:, [0, -1]]], -1)
    # The RV outline runs apex -> base on the free wall (index k - 1 is its base), then base -> apex on the septum.
    tv_hinges = np.stack([rv.u[:, [k, k - 1]], rv.n[:, [k, k - 1]]], -1)
    hinges = np.concatenate([hinges, tv_hinges], axis=1)
    tv_width = rv.n[:, k] - rv.n[:, k - 1]
    tips = _leaflets(spec, hinges, np.stack([(w_sept + w_lat)[:, 0], tv_width], axis=1))

    lat_u, lat_n = lv.outer_u[:, k:], lv.outer_n[:, k:]
    pu, pn = _outward_normals(lat_u, lat_n, 1.0)
    free_u, free_n = rv.outer_u[:, :k], rv.outer_n[:, :k]
    fu, fn = _outward_normals(free_u, free_n, -1.0)
    return Scene(
        tissue=[
            image(lv.outer_u, lv.outer_n),
            image(rv.outer_u, rv.outer_n),
            image(*_ellipse(state.length, la_bottom, la_n, la_half, atrial_wall)),
            image(*_ellipse(u_tv, ra_bottom, ra_n, ra_half, atrial_wall)),
        ],
        cavities=[
            image(paint_u, paint_n),
            image(rv.u, rv.n),
            image(*_ellipse(state.length, la_bottom, la_n, la_half, 0.0)),
            image(*_ellipse(u_tv, ra_bottom, ra_n, ra_half, 0.0)),
        ],
        pericardium=[image(lat_u + 1.5 * pu, lat_n + 1.5 * pn), image(free_u + 1.5 * fu, free_n + 1.5 * fn)],
        leaflets=np.stack([image(hinges[..., 0], hinges[..., 1]), image(tips[..., 0], tips[..., 1])], axis=2),
        annuli=image(hinges[..., 0], hinges[..., 1]),
        lv_cavity=image(lv.u, lv.n),
    )
