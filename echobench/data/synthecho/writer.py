"""Writing SynthEcho in the EchoNet-Dynamic on-disk format (plus FileListExtra.csv and a manifest).

Files (floats at fixed precision so two runs with one seed are byte-identical):

* ``FileList.csv`` — ``FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split`` (name without
  extension, Split in TRAIN/VAL/TEST).
* ``VolumeTracings.csv`` — ``FileName,X1,Y1,X2,Y2,Frame`` (name with ``.avi``). Per traced frame the first row is
  the LV long axis (apex, then mitral-annulus midpoint), then one row per disc chord from apex to base, septal
  point first. As in EchoNet-Dynamic, whose loader takes a video's last traced frame as the large one, the ES
  frame's rows come before the ED frame's.
* ``FileListExtra.csv`` — ``FileName,PatientID,MI,HeartRate,EDFrame,ESFrame``.
* ``Videos/<FileName>.avi`` — MJPEG, grey stored as three identical channels, at the video's own FPS.
* ``synthecho.json`` — generator, version, seed and size (what produced the folder).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FILE_LIST_HEADER = "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"
TRACINGS_HEADER = "FileName,X1,Y1,X2,Y2,Frame"
EXTRA_HEADER = "FileName,PatientID,MI,HeartRate,EDFrame,ESFrame"
MANIFEST = "synthecho.json"


@dataclass(frozen=True)
class VideoRecord:
    """One written video's row data; ``tracings`` maps frame -> ``(1 + discs, 4)`` rows of X1, Y1, X2, Y2."""

    name: str
    ef: float
    esv: float
    edv: float
    height: int
    width: int
    fps: int
    frames: int
    split: str
    patient_id: str
    mi: int
    heart_rate: float
    ed_frame: int
    es_frame: int
    tracings: dict[int, np.ndarray]


def write_avi(path: Path, frames: np.ndarray, fps: int) -> None:
    """Write grey frames ``(T, H, W)`` uint8 as an MJPEG AVI with three identical channels."""
    _, height, width = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (width, height), isColor=True)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open {path} for writing")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()


def _lines(header: str, rows: Sequence[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def write_tables(root: Path, records: Sequence[VideoRecord]) -> None:
    """Write FileList.csv, VolumeTracings.csv and FileListExtra.csv for ``records`` (in their order)."""
    files = [
        f"{r.name},{r.ef:.4f},{r.esv:.4f},{r.edv:.4f},{r.height},{r.width},{r.fps},{r.frames},{r.split}"
        for r in records
    ]
    traces = [
        f"{r.name}.avi,{x1:.4f},{y1:.4f},{x2:.4f},{y2:.4f},{frame}"
        for r in records
        for frame in (r.es_frame, r.ed_frame)
        for x1, y1, x2, y2 in r.tracings[frame]
    ]
    extra = [f"{r.name},{r.patient_id},{r.mi},{r.heart_rate:.2f},{r.ed_frame},{r.es_frame}" for r in records]
    (root / "FileList.csv").write_text(_lines(FILE_LIST_HEADER, files))
    (root / "VolumeTracings.csv").write_text(_lines(TRACINGS_HEADER, traces))
    (root / "FileListExtra.csv").write_text(_lines(EXTRA_HEADER, extra))


def write_manifest(root: Path, manifest: dict[str, object]) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(root: Path) -> dict[str, object] | None:
    """The manifest of a SynthEcho folder, or None when ``root`` holds none (or an unreadable one)."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
