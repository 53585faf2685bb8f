"""Reading echo cines from DICOM: grey frames, the ultrasound region, and header metadata.

Echo DICOMs (RVENet, MIMIC-IV-ECHO) are multi-frame ``US`` objects, usually RGB or YBR colour (the ECG trace and
Doppler overlays are coloured) and sometimes monochrome. Frames become grey luma, the same signal the AVI reader
takes from the Y plane, so a DICOM and an AVI of the same clip decode alike.

The scanner states where the image lies in the frame in ``SequenceOfUltrasoundRegions``
(``RegionLocationMinX0/MinY0/MaxX1/MaxY1``, inclusive pixel bounds): frames are cut to it, which drops the
patient banner, measurement panels and ECG strip that would otherwise widen the sector box of
:func:`~echobench.data.video_io.working_crop`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from echobench.data.video_io import VideoInfo
from echobench.errors import UserError

#: RegionSpatialFormat of a 2D (B-mode) region; M-mode and spectral Doppler strips have other codes.
_SPATIAL_2D = 1


def _read(path: Path, header_only: bool) -> pydicom.Dataset:
    if not path.is_file():
        raise UserError(f"DICOM {path} does not exist; restore it or remove it from the dataset's file list")
    try:
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    except (InvalidDicomError, OSError, ValueError) as err:
        raise UserError(f"DICOM {path} is corrupt or unreadable ({err}); replace it") from err


def ultrasound_region(ds: pydicom.Dataset) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` (bottom/right exclusive) of the image region the scanner declares.

    Of several regions (a B-mode image above a Doppler strip) the largest 2D one is taken, else the largest.
    ``None`` when the DICOM declares none.
    """
    regions = [r for r in ds.get("SequenceOfUltrasoundRegions", []) if "RegionLocationMinX0" in r]
    if not regions:
        return None
    two_d = [r for r in regions if r.get("RegionSpatialFormat") == _SPATIAL_2D]

    def area(r: pydicom.Dataset) -> int:
        return (int(r.RegionLocationMaxX1) - int(r.RegionLocationMinX0)) * (
            int(r.RegionLocationMaxY1) - int(r.RegionLocationMinY0)
        )

    best = max(two_d or regions, key=area)
    return (
        int(best.RegionLocationMinY0),
        int(best.RegionLocationMaxY1) + 1,
        int(best.RegionLocationMinX0),
        int(best.RegionLocationMaxX1) + 1,
    )


def frame_rate(ds: pydicom.Dataset) -> float:
    """Frames per second from the header (display rate, cine rate or frame time), NaN when none is given."""
    for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
        value = ds.get(keyword)
        if value:
            return float(value)
    frame_time = ds.get("FrameTime")  # milliseconds between frames
    return 1000.0 / float(frame_time) if frame_time else float("nan")


def dicom_info(path: Path | str) -> VideoInfo:
    """Frame count, frame rate and (region-cropped) size from the header alone, without decoding pixels."""
    path = Path(path)
    ds = _read(path, header_only=True)
    if "Rows" not in ds or "Columns" not in ds:
        raise UserError(f"DICOM {path} holds no image (no Rows/Columns); remove it from the dataset")
    top, bottom, left, right = ultrasound_region(ds) or (0, int(ds.Rows), 0, int(ds.Columns))
    bottom, right = min(bottom, int(ds.Rows)), min(right, int(ds.Columns))
    return VideoInfo(
        num_frames=int(ds.get("NumberOfFrames", 1) or 1),
        fps=frame_rate(ds),
        height=bottom - top,
        width=right - left,
    )


def _grey(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """All frames ``(T, H, W)`` uint8 grey. pydicom converts YBR colour to RGB, so colour is always RGB here."""
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for unsupported or broken pixel data
        raise UserError(f"DICOM {path}: cannot decode pixel data ({err}); replace it or install its codec") from err
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = int(ds.get("SamplesPerPixel", 1)) == 3
    if frames == 1:
        pixels = pixels[None]
    if colour:
        pixels = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in pixels.astype(np.uint8)])
    elif pixels.dtype != np.uint8:
        bits = int(ds.get("BitsStored", 8))
        pixels = np.clip(np.rint(pixels.astype(np.float64) * (255.0 / (2**bits - 1))), 0, 255).astype(np.uint8)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":  # 0 is white in MONOCHROME1
        pixels = 255 - pixels
    return np.ascontiguousarray(pixels)


def read_dicom_video(path: Path | str) -> np.ndarray:
    """Grey frames ``(T, H, W)`` uint8 of a DICOM cine, cut to its ultrasound region when it declares one."""
    path = Path(path)
    ds = _read(path, header_only=False)
    frames = _grey(ds, path)
    region = ultrasound_region(ds)
    if region is not None:
        top, bottom, left, right = region
        frames = frames[:, top:bottom, left:right]
        if frames.size == 0:
            raise UserError(f"DICOM {path}: its ultrasound region {region} lies outside the frame; fix the header")
    return np.ascontiguousarray(frames)
