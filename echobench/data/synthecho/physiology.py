"""SynthEcho physiology: the synthetic patients, their cardiac cycle, and the exact left-ventricular labels.

Everything here is geometry and random draws, no pixels. Conventions:

* Image coordinates are EchoNet's: ``x`` = column, ``y`` = row, pixel centres at integers.
* The *heart frame* has its origin at the LV endocardial apex; ``u`` runs along the LV long axis toward the mitral
  annulus, ``n`` across it toward the lateral wall (image right; the septum and right heart are at ``n < 0``).
* The LV cavity is a "bullet": at relative height ``s = u / L`` (0 apex, 1 annulus) its septal and lateral walls
  lie at ``n = -w_sept(s)`` and ``n = +w_lat(s)``. Volumes use the method of discs over ``NUM_DISCS`` chords at
  ``s = (i + 0.5) / NUM_DISCS``: ``V = pi/4 * sum(d_i^2) * L / NUM_DISCS`` — exactly what a reader recomputes from
  VolumeTracings.csv, so the written EF and the written tracings agree to rounding.
* ``PIXEL_SPACING_CM`` is fixed (isotropic, 1.5 mm per pixel of the 112 x 112 frame, a 16.8 cm deep view), so one
  cubic pixel is 0.003375 ml.

Reproducibility: patient ``p`` draws from ``SeedSequence(seed, spawn_key=(0, p, 0))`` and its ``k``-th video from
``(0, p, 1 + k)``; split blocks use ``(1, block)``. Video ``i`` therefore never depends on how many videos are made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

FRAME_SIZE = 112
PIXEL_SPACING_CM = 0.15
ML_PER_CUBIC_PIXEL = PIXEL_SPACING_CM**3
NUM_DISCS = 20

SPLITS = ("TRAIN", "VAL", "TEST")
# Every block of 20 consecutive patients holds 8/3/9 patients of TRAIN/VAL/TEST (40/15/45 %), and its first three
# patients cover all three splits, so even a tiny dataset has a patient in each split. The test share is much larger
# than EchoNet-Dynamic's: a benchmark's power to separate two methods is set by its test patients, while a frozen
# probe and a 100-step pretraining need a few hundred training videos, not thousands.
_SPLIT_BLOCK = 20
_SPLIT_TAIL = ("TRAIN",) * 7 + ("VAL",) * 2 + ("TEST",) * 8
# Most patients have one video, as in EchoNet-Dynamic (one echo per patient); a few have two or three, so that
# patient grouping is exercised. Videos of one heart are nearly copies for EF (within-patient SD ~1.5 against ~11
# between patients), so the number of test *patients*, not videos, sets how narrow a test interval can be.
_VIDEOS_PER_PATIENT = (1, 2, 3)
_VIDEOS_PER_PATIENT_P = (0.80, 0.15, 0.05)

# EF population: a mixture of normal and reduced function, truncated to [12, 82] — ~1/3 with EF <= 50 and ~30 %
# outside [45, 75] (ef_anomaly). EchoNet-Dynamic has ~20 % with EF <= 50; SynthEcho has more reduced function so
# that its binary tasks hold >= 40 test videos of each class at the default size.
_EF_NORMAL = (61.0, 6.5)
_EF_REDUCED = (37.0, 10.0)
_EF_REDUCED_SHARE = 0.35
_EF_RANGE = (12.0, 82.0)

# Regional wall-motion abnormality (HMC-QU's MI label): one segment of the A4C view, more likely when EF is low.
MI_LEVELS = ("apical", "mid", "basal")
# (centre, half-width) of each segment in relative height s; the cos^2 window is exactly 0 at its edges, so the
# annulus (s = 1) always moves normally and the annulus midpoint stays on the long axis.
_MI_WINDOWS = ((0.21, 0.21), (0.51, 0.21), (0.80, 0.20))
_MI_LEVEL_P = (0.45, 0.35, 0.20)
_MI_P_NORMAL_EF = 0.15
_MI_P_REDUCED_EF = 0.55

# LV shape: widest at 75 % of the length, narrowing by 15 % toward the annulus.
_PROFILE_PEAK = 0.75
_PROFILE_NECK = 0.15
# ESV/EDV = (L_es / L_ed) * (mean chord^2 ratio); the longitudinal part is r ** 0.2 (~17 % shortening at EF 60).
_LONGITUDINAL_EXPONENT = 0.2
_MAX_RADIAL_SHORTENING = 0.75


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Raised-cosine step on [0, 1]: exactly 0 at 0 and 1 at 1, zero slope at both ends."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def bullet_profile(s: np.ndarray, peak: float = _PROFILE_PEAK, neck: float = _PROFILE_NECK) -> np.ndarray:
    """Relative half-width of a ventricle at relative height ``s`` (0 apex, 1 base): elliptic up to ``peak``,
    then narrowing by ``neck`` toward the valve annulus."""
    s = np.clip(s, 0.0, 1.0)
    rise = np.sqrt(np.clip(1.0 - (1.0 - s / peak) ** 2, 0.0, 1.0))
    fall = 1.0 - neck * ((s - peak) / (1.0 - peak)) ** 2
    return np.where(s < peak, rise, fall)


def lv_profile(s: np.ndarray) -> np.ndarray:
    """Relative LV half-width at relative height ``s``."""
    return bullet_profile(s)


def disc_heights() -> np.ndarray:
    """Relative heights ``s`` of the method-of-discs chords."""
    return (np.arange(NUM_DISCS) + 0.5) / NUM_DISCS


def disc_volume(axis_length: np.ndarray, chord_lengths: np.ndarray) -> np.ndarray:
    """Method of discs (single plane): ``pi/4 * sum(d_i^2) * L / N`` in ml, from lengths in pixels.

    ``axis_length`` is ``(...)``, ``chord_lengths`` ``(..., N)``.
    """
    n = chord_lengths.shape[-1]
    return np.pi / 4.0 * np.sum(chord_lengths**2, axis=-1) * axis_length / n * ML_PER_CUBIC_PIXEL


@dataclass(frozen=True)
class CardiacCycle:
    """One heart's periodic cycle, in seconds; ``ed_onset`` is the time of the first end-diastole.

    Normalised LV volume is 1 from ED through isovolumic contraction, falls during ejection (front-loaded: ~70 %
    of the stroke in the first half), stays 0 through isovolumic relaxation, then refills with a rapid E wave
    followed by the atrial A wave that ends at the next ED.
    """

    rr: float
    ivc: float
    ejection: float
    ivr: float
    e_wave: float
    a_wave: float
    e_share: float
    ed_onset: float

    @property
    def filling_onset(self) -> float:
        return self.ivc + self.ejection + self.ivr

    def volume(self, t: np.ndarray) -> np.ndarray:
        """Normalised LV volume (1 = ED, 0 = ES) at times ``t``."""
        tau = np.mod(np.asarray(t, dtype=np.float64) - self.ed_onset, self.rr)
        ejected = smoothstep(np.clip((tau - self.ivc) / self.ejection, 0.0, 1.0) ** 0.7)
        filled = self.e_share * smoothstep((tau - self.filling_onset) / self.e_wave) + (
            1.0 - self.e_share
        ) * smoothstep((tau - (self.rr - self.a_wave)) / self.a_wave)
        return np.where(tau < self.filling_onset, 1.0 - ejected, filled)

    def inflow(self, t: np.ndarray) -> np.ndarray:
        """Atrioventricular inflow in [0, 1] (0 while the valve is shut), from the filling rate."""
        dt = 1e-3
        rate = (self.volume(np.asarray(t) + dt) - self.volume(np.asarray(t) - dt)) / (2 * dt)
        peak = self.e_share * np.pi / (2 * self.e_wave)
        return np.clip(1.6 * rate / peak, 0.0, 1.0) ** 0.6


@dataclass(frozen=True)
class Patient:
    """What is shared by all videos of one synthetic patient."""

    patient_id: int
    split: str
    num_videos: int
    ef: float
    mi: bool
    mi_side: int
    mi_level: int
    mi_severity: float
    edv_ml: float
    sphericity: float
    wall_cm: float
    heart_rate: float
    rv_width: float
    rv_shortening: float
    la_size: float


@dataclass(frozen=True)
class Acquisition:
    """Imaging settings of one video (the probe's field of view and the scanner's processing)."""

    sector_half_angle: float
    sector_radius: float
    sector_apex_y: float
    gain_db: float
    dynamic_range_db: float
    attenuation_db: float
    blur_sigma: float
    clutter: float
    speckle_lateral: float
    speckle_axial: float
    speckle_memory: float
    tissue_level: float
    noise_seed: int


@dataclass(frozen=True, eq=False)
class VideoSpec:
    """Everything needed to render one video and compute its labels (lengths in pixels, angles in radians)."""

    index: int
    name: str
    patient: Patient
    frames: int
    fps: int
    heart_rate: float
    cycle: CardiacCycle
    length_px: float
    diameter_px: float
    wall_px: float
    longitudinal_ratio: float
    radial_shortening: float
    apex_x: float
    apex_y: float
    tilt: float
    acquisition: Acquisition
    probe_offset: np.ndarray = field(repr=False)

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.frames) / self.fps

    def wall_motion(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return wall_motion(self.patient, s)


def wall_motion(patient: Patient, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative inward motion of the septal and lateral walls at heights ``s`` (1 = normal, 0 = akinetic)."""
    septal = np.ones_like(s, dtype=np.float64)
    lateral = np.ones_like(s, dtype=np.float64)
    if patient.mi:
        centre, half = _MI_WINDOWS[patient.mi_level]
        window = np.where(np.abs(s - centre) < half, np.cos(np.pi / 2 * (s - centre) / half) ** 2, 0.0)
        hit = 1.0 - patient.mi_severity * window
        if patient.mi_side < 0:
            septal = hit
        else:
            lateral = hit
    return septal, lateral


@dataclass(frozen=True)
class LVState:
    """LV length ``(T,)`` and septal/lateral half-widths ``(T, K)`` at heights ``s`` ``(K,)``."""

    s: np.ndarray
    length: np.ndarray
    septal: np.ndarray
    lateral: np.ndarray
    contraction: np.ndarray


def lv_state(spec: VideoSpec, s: np.ndarray, frames: np.ndarray | None = None) -> LVState:
    """The LV cavity walls at heights ``s`` for the given frame indices (all frames by default)."""
    idx = np.arange(spec.frames) if frames is None else np.asarray(frames)
    v = spec.cycle.volume(idx / spec.fps)
    length = spec.length_px * (1.0 - (1.0 - spec.longitudinal_ratio) * (1.0 - v))
    contraction = spec.radial_shortening * (1.0 - v)
    half = spec.diameter_px / 2.0 * lv_profile(s)
    m_sept, m_lat = spec.wall_motion(s)
    septal = half[None] * (1.0 - contraction[:, None] * m_sept[None])
    lateral = half[None] * (1.0 - contraction[:, None] * m_lat[None])
    return LVState(s=s, length=length, septal=septal, lateral=lateral, contraction=contraction)


def to_image(spec: VideoSpec, u: np.ndarray, n: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
    """Heart-frame points ``(T, ...)`` to image ``(x, y)``, ``(T, ..., 2)``, with each frame's probe offset."""
    idx = np.arange(spec.frames) if frames is None else np.asarray(frames)
    offset = spec.probe_offset[idx].reshape((len(idx),) + (1,) * (np.ndim(u) - 1) + (2,))
    sin, cos = math.sin(spec.tilt), math.cos(spec.tilt)
    x = spec.apex_x + u * sin + n * cos
    y = spec.apex_y + u * cos - n * sin
    return np.stack([x, y], axis=-1) + offset


def lv_volumes(spec: VideoSpec) -> np.ndarray:
    """Per-frame LV volume in ml by the method of discs (the ground truth behind EDV/ESV)."""
    state = lv_state(spec, disc_heights())
    return disc_volume(state.length, state.septal + state.lateral)


def lv_areas(spec: VideoSpec, samples: int = 64) -> np.ndarray:
    """Per-frame LV cavity area in pixels (shoelace over the cavity outline)."""
    outline = lv_outline(spec, samples)
    x, y = outline[..., 0], outline[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))


def outline_heights(samples: int) -> np.ndarray:
    """Heights of the outline samples, dense near the apex where the wall curves most."""
    return np.linspace(0.0, 1.0, samples + 1)[1:] ** 1.5


def lv_outline_heart(spec: VideoSpec, samples: int = 48) -> tuple[np.ndarray, np.ndarray, LVState]:
    """The open cavity outline in the heart frame, septal base -> apex -> lateral base: ``u, n`` ``(T, 2K+1)``."""
    state = lv_state(spec, outline_heights(samples))
    u_side = state.s[None] * state.length[:, None]
    zero = np.zeros((spec.frames, 1))
    u = np.concatenate([u_side[:, ::-1], zero, u_side], axis=1)
    n = np.concatenate([-state.septal[:, ::-1], zero, state.lateral], axis=1)
    return u, n, state


def lv_outline(spec: VideoSpec, samples: int = 48) -> np.ndarray:
    """The closed LV cavity polygon in image coordinates, ``(T, 2K+1, 2)`` (closed by the mitral plane)."""
    u, n, _ = lv_outline_heart(spec, samples)
    return to_image(spec, u, n)


@dataclass(frozen=True)
class LVLabels:
    """EchoNet-style labels of one video: the traced ED/ES frames, their volumes and tracings.

    ``tracings[frame]`` is ``(1 + NUM_DISCS, 4)`` rows of ``X1, Y1, X2, Y2``: the long axis (apex -> annulus
    midpoint) then the chords, septal wall point first.
    """

    ed_frame: int
    es_frame: int
    edv: float
    esv: float
    tracings: dict[int, np.ndarray]

    @property
    def ef(self) -> float:
        return 100.0 * (self.edv - self.esv) / self.edv


def traced_frames(spec: VideoSpec) -> tuple[int, int]:
    """ED and ES frame of the first complete systole; the largest/smallest frame if the clip is shorter."""
    c = spec.cycle
    ed = math.ceil(c.ed_onset * spec.fps - 1e-9)
    es = math.ceil((c.ed_onset + c.ivc + c.ejection) * spec.fps - 1e-9)
    if es < spec.frames:
        return ed, es
    volumes = lv_volumes(spec)
    ed, es = int(np.argmax(volumes)), int(np.argmin(volumes))
    # A clip caught inside a volume plateau has no distinct extremes; trace two distinct frames regardless.
    return (ed, es) if ed != es else (ed, (ed + 1) % spec.frames)


def lv_labels(spec: VideoSpec) -> LVLabels:
    """Volumes and tracings at the traced ED and ES frames, from the same chords a reader sees."""
    ed, es = traced_frames(spec)
    frames = np.array([ed, es])
    s = disc_heights()
    state = lv_state(spec, s, frames)
    u = s[None] * state.length[:, None]
    septal = to_image(spec, u, -state.septal, frames)
    lateral = to_image(spec, u, state.lateral, frames)
    zeros = np.zeros((2, 1))
    axis = to_image(spec, np.concatenate([zeros, state.length[:, None]], 1), np.zeros((2, 2)), frames)
    rows = np.concatenate(
        [np.concatenate([axis[:, :1], axis[:, 1:]], axis=-1), np.concatenate([septal, lateral], axis=-1)], axis=1
    )
    volumes = disc_volume(state.length, state.septal + state.lateral)
    return LVLabels(
        ed_frame=ed,
        es_frame=es,
        edv=float(volumes[0]),
        esv=float(volumes[1]),
        tracings={ed: rows[0], es: rows[1]},
    )


def _seq(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _split_of(seed: int, patient_id: int) -> str:
    block, pos = divmod(patient_id, _SPLIT_BLOCK)
    rng = _seq(seed, 1, block)
    order = list(rng.permutation(SPLITS)) + list(rng.permutation(_SPLIT_TAIL))
    return str(order[pos])


def sample_patient(seed: int, patient_id: int) -> Patient:
    """Draw one patient's heart (independent of every other patient)."""
    rng = _seq(seed, 0, patient_id, 0)
    num_videos = int(rng.choice(_VIDEOS_PER_PATIENT, p=_VIDEOS_PER_PATIENT_P))
    while True:
        mean, sd = _EF_REDUCED if rng.random() < _EF_REDUCED_SHARE else _EF_NORMAL
        ef = rng.normal(mean, sd)
        if _EF_RANGE[0] <= ef <= _EF_RANGE[1]:
            break
    mi = bool(rng.random() < (_MI_P_REDUCED_EF if ef <= 50 else _MI_P_NORMAL_EF))
    return Patient(
        patient_id=patient_id,
        split=_split_of(seed, patient_id),
        num_videos=num_videos,
        ef=float(ef),
        mi=mi,
        mi_side=int(rng.choice((-1, 1), p=(0.55, 0.45))) if mi else 0,
        mi_level=int(rng.choice(3, p=_MI_LEVEL_P)) if mi else -1,
        mi_severity=float(rng.uniform(0.6, 1.0)) if mi else 0.0,
        edv_ml=float(np.clip(95.0 * math.exp(rng.normal(0.0, 0.3)), 40.0, 230.0)),
        sphericity=float(np.clip(rng.normal(0.55, 0.04), 0.45, 0.68)),
        wall_cm=float(np.clip(rng.normal(1.1, 0.12), 0.8, 1.5)),
        heart_rate=float(np.clip(rng.normal(72.0, 12.0), 50.0, 115.0)),
        rv_width=float(np.clip(rng.normal(0.72, 0.08), 0.5, 0.95)),
        rv_shortening=float(np.clip(rng.normal(0.3, 0.06), 0.12, 0.45)),
        la_size=float(np.clip(rng.normal(1.0, 0.1), 0.75, 1.35)),
    )


def _shortening(target_ef: float, motion: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Longitudinal ES/ED length ratio and radial shortening that give ``target_ef`` by the method of discs.

    With chords ``d_i = D P_i (2 - a M_i) / 2`` at ES (``M_i`` = summed wall motion), the ES/ED chord-square ratio
    ``q`` is quadratic in ``a``; its smaller root is taken. Segments too akinetic to reach the target cap ``a``.
    """
    r = 1.0 - target_ef / 100.0
    longitudinal = r**_LONGITUDINAL_EXPONENT
    q = r / longitudinal
    p2 = lv_profile(disc_heights()) ** 2
    m = motion[0] + motion[1]
    a0, a1, a2 = p2.sum(), (p2 * m).sum(), (p2 * m * m).sum()
    disc = a1 * a1 - a2 * a0 * (1.0 - q)
    a = 2.0 * (a1 - math.sqrt(disc)) / a2 if disc >= 0 else 2.0 * a1 / a2
    return longitudinal, min(a, _MAX_RADIAL_SHORTENING)


def _cycle(rng: np.random.Generator, heart_rate: float, frames: int, fps: int) -> CardiacCycle:
    rr = 60.0 / heart_rate
    ivc = rng.uniform(0.045, 0.06)
    ejection = (0.413 - 0.0017 * heart_rate) * rng.uniform(0.92, 1.08)
    ivr = rng.uniform(0.06, 0.08)
    diastole = rr - (ivc + ejection + ivr)
    e_wave = min(rng.uniform(0.14, 0.2), 0.8 * diastole)
    a_wave = min(rng.uniform(0.1, 0.14), 0.5 * diastole)
    latest = (frames - 2) / fps - (ivc + ejection) - 1e-6
    ed_onset = rng.uniform(0.0, min(rr, latest)) if latest > 0 else rng.uniform(0.0, rr)
    return CardiacCycle(
        rr=rr,
        ivc=ivc,
        ejection=ejection,
        ivr=ivr,
        e_wave=e_wave,
        a_wave=a_wave,
        e_share=rng.uniform(0.65, 0.82),
        ed_onset=ed_onset,
    )


def _probe_offset(rng: np.random.Generator, frames: int, fps: int) -> np.ndarray:
    """Respiratory drift (a slow sinusoid along a random direction) plus a small random walk, in pixels."""
    t = np.arange(frames) / fps
    amp, period, angle, phase = (
        rng.uniform(0.3, 2.0),
        rng.uniform(3.0, 6.0),
        rng.uniform(0, np.pi),
        rng.uniform(0, 2 * np.pi),
    )
    drift = amp * np.sin(2 * np.pi * t / period + phase)[:, None] * np.array([math.cos(angle), math.sin(angle)])
    walk = np.cumsum(rng.normal(0.0, 0.12, size=(frames, 2)), axis=0)
    return drift + walk - walk.mean(axis=0)


def _acquisition(rng: np.random.Generator) -> Acquisition:
    return Acquisition(
        sector_half_angle=math.radians(rng.uniform(37.0, 43.0)),
        sector_radius=rng.uniform(100.0, 114.0),
        sector_apex_y=rng.uniform(-3.0, 1.0),
        gain_db=rng.uniform(-4.0, 4.0),
        dynamic_range_db=rng.uniform(40.0, 50.0),
        attenuation_db=rng.uniform(4.0, 12.0),
        blur_sigma=rng.uniform(0.3, 0.9),
        clutter=rng.uniform(0.0, 0.35),
        speckle_lateral=rng.uniform(0.9, 1.4),
        speckle_axial=rng.uniform(0.5, 0.8),
        speckle_memory=rng.uniform(0.6, 0.9),
        tissue_level=rng.uniform(0.8, 1.2),
        noise_seed=int(rng.integers(2**63)),
    )


def sample_video(seed: int, patient: Patient, k: int, index: int, frames: int) -> VideoSpec:
    """Draw acquisition ``k`` of ``patient`` (its heart, plus this acquisition's beat, view and scanner)."""
    rng = _seq(seed, 0, patient.patient_id, 1 + k)
    fps = int(rng.integers(30, 61))
    heart_rate = float(np.clip(patient.heart_rate + rng.normal(0.0, 3.0), 48.0, 120.0))
    target_ef = float(np.clip(patient.ef + rng.normal(0.0, 1.5), 10.0, 85.0))
    cycle = _cycle(rng, heart_rate, frames, fps)
    # Method of discs for the ED bullet: V = pi/4 * D^2 * L * mean(P_i^2); D = sphericity * L.
    shape = np.pi / 4 * patient.sphericity**2 * float(np.mean(lv_profile(disc_heights()) ** 2))
    length = (patient.edv_ml / ML_PER_CUBIC_PIXEL / shape) ** (1 / 3)
    longitudinal, radial = _shortening(target_ef, wall_motion(patient, disc_heights()))
    spec = VideoSpec(
        index=index,
        name=f"SE{patient.patient_id:05d}_{k}",
        patient=patient,
        frames=frames,
        fps=fps,
        heart_rate=heart_rate,
        cycle=cycle,
        length_px=length * rng.normal(1.0, 0.03),
        diameter_px=patient.sphericity * length * rng.normal(1.0, 0.03),
        wall_px=patient.wall_cm / PIXEL_SPACING_CM * rng.normal(1.0, 0.05),
        longitudinal_ratio=longitudinal,
        radial_shortening=radial,
        apex_x=rng.normal(58.0, 2.5),
        apex_y=rng.normal(13.0, 1.5),
        tilt=math.radians(rng.normal(11.0, 3.5)),
        acquisition=_acquisition(rng),
        probe_offset=_probe_offset(rng, frames, fps),
    )
    return _fit_in_sector(spec)


def in_sector(acq: Acquisition, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Whether image points ``(..., 2)`` lie inside the sector with ``margin`` pixels to spare."""
    dx, dy = xy[..., 0] - (FRAME_SIZE - 1) / 2, xy[..., 1] - acq.sector_apex_y
    r = np.hypot(dx, dy)
    angle = np.arctan2(np.abs(dx), dy)
    inside_angle = r * np.sin(acq.sector_half_angle - angle) >= margin
    inside_frame = (xy >= margin).all(-1) & (xy <= FRAME_SIZE - 1 - margin).all(-1)
    return inside_angle & (r <= acq.sector_radius - margin) & inside_frame


def _fit_in_sector(spec: VideoSpec) -> VideoSpec:
    """Move the heart down (and shrink a heart too large for the view) until the LV cavity lies inside the sector.

    The ED cavity (the largest) is checked at the corners of the probe offsets' bounding box, for all candidate
    downward shifts at once; the smallest shift that fits wins.
    """
    lo, hi = spec.probe_offset.min(axis=0), spec.probe_offset.max(axis=0)
    corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
    shifts = np.stack([np.zeros(30), np.arange(30.0)], axis=1)
    for _ in range(20):
        ed = replace(spec, probe_offset=np.zeros((1, 2)), frames=1, cycle=replace(spec.cycle, ed_onset=0.0))
        outline = lv_outline(ed, 8)[0]
        moved = outline[None, None] + corners[None, :, None] + shifts[:, None, None]
        fits = in_sector(spec.acquisition, moved, margin=2.0).all(axis=(1, 2))
        fits &= spec.apex_y + shifts[:, 1] + spec.length_px * math.cos(spec.tilt) < spec.acquisition.sector_radius - 14
        if fits.any():
            return replace(spec, apex_y=spec.apex_y + float(shifts[np.argmax(fits), 1]))
        spec = replace(spec, length_px=spec.length_px * 0.97, diameter_px=spec.diameter_px * 0.97)
    return spec


def sample_dataset(seed: int, videos: int, frames: int) -> list[VideoSpec]:
    """The first ``videos`` videos of the SynthEcho population of ``seed`` (patients in order, 1–3 videos each)."""
    specs: list[VideoSpec] = []
    patient_id = 0
    while len(specs) < videos:
        patient = sample_patient(seed, patient_id)
        for k in range(min(patient.num_videos, videos - len(specs))):
            specs.append(sample_video(seed, patient, k, len(specs), frames))
        patient_id += 1
    return specs
