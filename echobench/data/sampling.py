"""Clip sampling: which source frames make up each clip of a video, per :class:`echobench.api.ClipSpec`.

A clip starting at ``s`` takes frames ``s, s + stride, …, s + (frames - 1) * stride`` (``spec.span`` frames of the
source). Indices past the end of a video shorter than the span are clamped to its last frame, i.e. the last frame is
repeated: every video stays usable at every clip length, as with padding, but the padding is real image content
(a black pad would be an artefact the model could key on).

``traced`` clips (segmentation) must contain the traced ED/ES frame itself, not a neighbour, and the protocol must
know which temporal token holds it: the frame sits at clip position ``q`` (start ``frame - q * stride``), so its
token index is ``q // tubelet`` (:func:`traced_token_index`).
"""

from __future__ import annotations

import numpy as np

from echobench.api import ClipSpec
from echobench.errors import UserError


def clip_starts(
    num_frames: int,
    spec: ClipSpec,
    rng: np.random.Generator | None = None,
    count: int = 1,
    fps: float | None = None,
) -> np.ndarray:
    """Start frames of the clips of one video (not used by ``ed_es``, whose clips are not strided, nor ``traced``).

    ``span`` is ``spec.span``, or for a time-based spec (``spec.seconds``) the frames ``seconds`` cover at the
    video's ``fps``.

    - ``random``: ``count`` starts drawn uniformly from ``[0, max(0, n - span)]``, distinct (drawn without
      replacement) whenever the video has that many starts.
    - ``fixed``: ``spec.start_frame``, moved back to ``n - span`` when the clip would run past the end (so a long
      enough video always gives a clip of distinct frames).
    - ``evenly``: ``spec.num_clips`` starts ``round(linspace(0, max(0, n - span), num_clips))``.
    - ``all``: ``0, frames * stride, 2 * frames * stride, …`` while ``start + span <= n``; at least ``[0]``.
      The spacing ``frames * stride`` makes consecutive clips tile the video on one stride lattice (for a
      time-based spec, ``round(seconds · fps)``: consecutive windows of ``seconds``).
    """
    span = spec.span if spec.seconds is None else spec.span_at(_fps(fps))
    last_start = max(0, num_frames - span)
    match spec.start:
        case "random":
            if rng is None:
                raise ValueError("random clip starts need a numpy Generator")
            if 1 < count <= last_start + 1:
                return rng.choice(last_start + 1, size=count, replace=False).astype(np.int64)
            return rng.integers(0, last_start + 1, size=count, dtype=np.int64)
        case "fixed":
            return np.array([min(spec.start_frame, last_start)], dtype=np.int64)
        case "evenly":
            return np.rint(np.linspace(0, last_start, spec.num_clips)).astype(np.int64)
        case "all":
            spacing = spec.frames * spec.stride if spec.seconds is None else max(1, round(spec.seconds * _fps(fps)))
            starts = np.arange(0, num_frames - span + 1, spacing, dtype=np.int64)
            return starts if len(starts) else np.zeros(1, dtype=np.int64)
        case _:
            raise ValueError(f"clip_starts does not handle start mode {spec.start!r}")


def _fps(fps: float | None) -> float:
    if fps is None or not fps > 0:
        raise UserError(f"time-based clips need each video's frame rate, got fps={fps}; fix the dataset's FPS column")
    return float(fps)


def traced_start(num_frames: int, frame: int, spec: ClipSpec) -> int:
    """Start of the clip that holds source frame ``frame`` exactly, at clip position ``q`` (``start ≡ frame`` mod
    ``stride``).

    ``q`` is the position nearest the clip centre ``(frames - 1) // 2`` among those whose clip starts at or after
    frame 0 (``q <= frame // stride``) and ends within the video (``start + span <= num_frames``). When none does
    both — a video shorter than the span, or one whose stride lattice through ``frame`` overruns the end by a
    frame — ``q`` is the largest position with ``start >= 0``, so the fewest frames at the clip's tail are clamped
    to the last frame; the traced frame itself is never replaced by a neighbour.
    """
    if not 0 <= frame < num_frames:
        raise ValueError(f"traced frame {frame} is outside a video of {num_frames} frames")
    centre = (spec.frames - 1) // 2
    latest = min(spec.frames - 1, frame // spec.stride)
    # ceil((frame + span - num_frames) / stride): the smallest q whose clip ends inside the video.
    earliest = max(0, -(-(frame + spec.span - num_frames) // spec.stride))
    return frame - min(max(centre, earliest), latest) * spec.stride


def traced_token_index(frame_indices: np.ndarray, frames: np.ndarray, tubelet: int) -> np.ndarray:
    """Temporal token index ``(n,)`` of ``frames[i]`` in clip ``frame_indices[i]`` (``(n, T)`` source frames).

    The frame's first position in the clip, integer-divided by the tubelet (clamped tail repeats come later).
    """
    frame_indices = np.asarray(frame_indices)
    frames = np.asarray(frames)
    hit = frame_indices == frames[:, None]
    if not hit.any(axis=1).all():
        row = int(np.flatnonzero(~hit.any(axis=1))[0])
        raise ValueError(f"clip {row} does not contain frame {int(frames[row])}; it was not sampled as traced")
    return hit.argmax(axis=1) // tubelet


def clip_indices(
    num_frames: int,
    spec: ClipSpec,
    rng: np.random.Generator | None = None,
    ed_es: tuple[int, int] | None = None,
    count: int = 1,
    fps: float | None = None,
) -> np.ndarray:
    """Source frame indices ``(num_clips, spec.frames)`` int64 of one video's clips (see :func:`clip_starts`).

    ``ed_es`` mode: one clip of ``spec.frames`` indices ``round(linspace(ed, es, frames))`` (ED first, so the clip
    always shows contraction); raises :class:`UserError` when ED/ES are unknown (-1 or None).
    ``uniform`` mode: one clip of ``spec.frames`` indices ``round(linspace(0, n - 1, frames))`` (the whole video).
    ``traced`` mode: the ED clip then the ES clip (:func:`traced_start`); no clip when ED/ES are unknown.
    ``fps`` is needed by time-based specs (``spec.seconds``), whose clip frames sit at :meth:`ClipSpec.offsets`.
    """
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if spec.start == "ed_es":
        if ed_es is None or min(ed_es) < 0:
            raise UserError(
                "this clip spec samples between end-diastole and end-systole, but the video has no ED/ES frames; "
                "use a dataset with LV tracings (or EDFrame/ESFrame columns)"
            )
        indices = np.rint(np.linspace(ed_es[0], ed_es[1], spec.frames))[None].astype(np.int64)
        return np.minimum(indices, num_frames - 1)
    if spec.start == "uniform":
        return np.rint(np.linspace(0, num_frames - 1, spec.frames))[None].astype(np.int64)
    if spec.start == "traced":
        if ed_es is None or min(ed_es) < 0:
            return np.zeros((0, spec.frames), dtype=np.int64)
        starts = np.array([traced_start(num_frames, frame, spec) for frame in ed_es], dtype=np.int64)
    else:
        starts = clip_starts(num_frames, spec, rng, count, fps)
    offsets = spec.offsets(_fps(fps)) if spec.seconds is not None else spec.offsets(0.0)
    return np.minimum(starts[:, None] + offsets, num_frames - 1)
