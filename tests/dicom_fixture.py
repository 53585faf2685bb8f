"""Writing tiny multi-frame ultrasound DICOMs (uncompressed 8-bit) the way echo scanners store cines."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid


def write_dicom(
    path: Path,
    frames: np.ndarray,
    fps: float = 30.0,
    photometric: str = "RGB",
    region: tuple[int, int, int, int] | None = None,
) -> None:
    """Write grey frames ``(T, H, W)`` uint8 as a DICOM cine.

    ``photometric``: ``MONOCHROME2`` stores the grey values; ``RGB`` stores them in all three channels;
    ``YBR_FULL`` stores them as luma with neutral chroma. ``region`` = (min_x, min_y, max_x, max_y), inclusive,
    is declared as the 2D tissue region in SequenceOfUltrasoundRegions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w = frames.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[path.name])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = h, w, t
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = f"{1000.0 / fps:.4f}"
    ds.PhotometricInterpretation = photometric
    if photometric == "MONOCHROME2":
        ds.SamplesPerPixel = 1
        pixels = frames
    else:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        if photometric == "RGB":
            pixels = np.repeat(frames[..., None], 3, axis=-1)
        else:
            pixels = np.stack([frames, np.full_like(frames, 128), np.full_like(frames, 128)], axis=-1)
    if region is not None:
        item = Dataset()
        item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = 1, 1, 0
        item.RegionLocationMinX0, item.RegionLocationMinY0 = region[0], region[1]
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = region[2], region[3]
        ds.SequenceOfUltrasoundRegions = Sequence([item])
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def luma(rgb: np.ndarray) -> np.ndarray:
    """The grey level OpenCV (and so the DICOM reader) gives an RGB image ``(..., 3)``."""
    flat = np.ascontiguousarray(rgb.reshape(-1, 1, 3), dtype=np.uint8)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY).reshape(rgb.shape[:-1])
