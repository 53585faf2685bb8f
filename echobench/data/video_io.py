"""Decoding AVI files to grey frames and resizing them to the working size.

Decoder: PyAV, reading the luma plane. On 100 MJPEG AVIs of 128 frames at 112² (the EchoNet/SynthEcho format),
2 CPU cores, ``benchmarks/decode_cache.py`` measured: PyAV luma plane ~7,900 frames/s, OpenCV ``VideoCapture`` +
BGR→grey ~3,900 frames/s, PyAV ``to_ndarray(format="gray")`` ~1,300 frames/s (best of 3, shared machine). For
full-range YUV (MJPEG's ``yuvj*``) the luma plane *is* the grey image, so it is used without conversion; other pixel
formats go through swscale's grey conversion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from echobench.errors import UserError

#: Pixel formats whose first plane is full-range luma, i.e. already the grey image.
_LUMA_IS_GREY = frozenset({"gray", "yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"})


def _grey(frame: av.VideoFrame) -> np.ndarray:
    if frame.format.name in _LUMA_IS_GREY:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        return rows[:, : plane.width]
    return frame.to_ndarray(format="gray")


@contextlib.contextmanager
def _video_stream(path: Path) -> Iterator[av.container.InputContainer]:
    """An opened container with a video stream; a missing, stream-less or corrupt file is a :class:`UserError`."""
    if not path.is_file():
        raise UserError(f"video {path} does not exist; restore it or remove it from the dataset's file list")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"video {path} has no video stream; replace it with a valid video")
            yield container
    except (av.FFmpegError, ValueError) as err:
        raise UserError(f"video {path} is corrupt or unreadable ({err}); replace it with a valid video") from err


def read_video_gray(path: Path | str) -> np.ndarray:
    """All frames of a video as grey ``(T, H, W)`` uint8.

    Raises :class:`UserError` naming the file when it is missing, cannot be decoded, or holds no frames.
    """
    path = Path(path)
    with _video_stream(path) as container:
        frames = [_grey(frame) for frame in container.decode(video=0)]
    if not frames:
        raise UserError(f"video {path} holds no frames; replace it with a valid video")
    return np.stack(frames)


@dataclass(frozen=True)
class VideoInfo:
    """What a file list needs to know about a video without decoding it."""

    num_frames: int
    fps: float
    height: int
    width: int


def probe_video(path: Path | str) -> VideoInfo:
    """Frame count, frame rate and size of a video from its container header (for formats whose file list lacks
    them). The count is the header's; the decode cache records the decoded count when they differ."""
    with _video_stream(Path(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate
        return VideoInfo(
            num_frames=int(stream.frames),
            fps=float(rate) if rate else float("nan"),
            height=int(stream.codec_context.height),
            width=int(stream.codec_context.width),
        )


@dataclass(frozen=True)
class Crop:
    """The source-pixel square ``rows [top, top + side) x cols [left, left + side)`` that becomes the working frame.

    The square may reach outside the image (to keep an aspect ratio); those pixels are black. Frames and
    segmentation masks of a video go through the same crop, so masks stay aligned with the pixels.
    """

    top: int
    left: int
    side: int

    def as_dict(self) -> dict[str, int]:
        return {"top": self.top, "left": self.left, "side": self.side}


def centre_square(height: int, width: int) -> Crop:
    """The centred square of side ``min(height, width)``."""
    side = min(height, width)
    return Crop(top=(height - side) // 2, left=(width - side) // 2, side=side)


#: Grey level above which a pixel belongs to the image rather than the black background: compression leaves the
#: background at 0-3, while the dimmest tissue inside a sector is well above this.
SECTOR_THRESHOLD = 8


#: A bright region smaller than this fraction of the largest one is an overlay (ECG trace, text, markers), not
#: part of the sector: overlays are thin or small and separated from the sector by black background.
OVERLAY_FRACTION = 0.05


def sector_region(frames: np.ndarray, threshold: int = SECTOR_THRESHOLD) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sector, overlays)``: boolean ``(H, W)`` maps of the ultrasound sector and of the bright pixels outside it.

    Pixels above ``threshold`` in the max projection over frames ``(T, H, W)`` are split into 8-connected regions;
    the largest is the sector, together with any region at least :data:`OVERLAY_FRACTION` of its size (a sector
    split by a dark band); smaller regions are overlays. ``None`` when every pixel is background.
    """
    bright = (frames.max(axis=0) > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = np.flatnonzero(areas >= OVERLAY_FRACTION * areas.max()) + 1
    sector = np.isin(labels, kept)
    return sector, bright.astype(bool) & ~sector


def mask_overlays(frames: np.ndarray, threshold: int = SECTOR_THRESHOLD) -> np.ndarray:
    """Frames ``(T, H, W)`` with overlays outside the sector (ECG trace, text) set to black, so neither the crop box
    nor the model sees them; the overlay map is grown by one pixel to take their anti-aliased edges too."""
    regions = sector_region(frames, threshold)
    if regions is None or not regions[1].any():
        return frames
    sector, overlays = regions
    grown = cv2.dilate(overlays.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~sector
    return np.where(grown[None], 0, frames).astype(frames.dtype)


def sector_box(frames: np.ndarray, threshold: int = SECTOR_THRESHOLD) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` (bottom/right exclusive) of the sector (:func:`sector_region`, overlays
    left out) in frames ``(T, H, W)``; ``None`` when every pixel is background."""
    regions = sector_region(frames, threshold)
    if regions is None:
        return None
    sector = regions[0]
    rows = np.flatnonzero(sector.any(axis=1))
    cols = np.flatnonzero(sector.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def working_crop(frames: np.ndarray) -> Crop:
    """The crop rule every dataset's frames ``(T, H, W)`` go through before resizing to the working size.

    The bounding box of the ultrasound sector (:func:`sector_box`, overlays such as an ECG trace or text left out;
    :func:`mask_overlays` blacks them out of the frames) made square around its centre by extending the shorter
    side, so the anatomy keeps its aspect ratio and black margins, labels outside the sector's rows and
    columns, and differences in native frame size between scanners stop mattering. Pixels the square takes from
    outside the image are black. Frames that are entirely sector (EchoNet's 112x112) give their own square; an
    all-black video falls back to the centred square.
    """
    _, h, w = frames.shape
    box = sector_box(frames)
    if box is None:
        return centre_square(h, w)
    top, bottom, left, right = box
    side = max(bottom - top, right - left)
    return Crop(top=(top + bottom - side) // 2, left=(left + right - side) // 2, side=side)


def crop_resize(images: np.ndarray, crop: Crop, size: int, nearest: bool = False) -> np.ndarray:
    """Cut ``crop`` out of images ``(T, H, W)`` (black outside the image) and resize to ``(T, size, size)``.

    Frames: area interpolation when shrinking and bilinear interpolation (half-pixel centres, OpenCV's
    ``INTER_LINEAR``, as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``) when enlarging,
    e.g. EchoNet's 112² to EchoVisionFM's 224², which its paper upsamples bilinearly (OpenCV's area
    interpolation would replicate pixels there). ``nearest`` for label maps, whose values are class indices.
    """
    t, h, w = images.shape
    top, left, side = crop.top, crop.left, crop.side
    if top >= 0 and left >= 0 and top + side <= h and left + side <= w:
        square = images[:, top : top + side, left : left + side]
    else:
        square = np.zeros((t, side, side), dtype=images.dtype)
        rows = slice(max(top, 0), min(top + side, h))
        cols = slice(max(left, 0), min(left + side, w))
        square[:, rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = images[:, rows, cols]
    if side == size:
        return square
    interpolation = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    return np.stack([cv2.resize(image, (size, size), interpolation=interpolation) for image in square])


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames ``(T, H, W)`` → ``(T, size, size)``: overlays masked, :func:`working_crop`, :func:`crop_resize`."""
    frames = mask_overlays(frames)
    return crop_resize(frames, working_crop(frames), size)
