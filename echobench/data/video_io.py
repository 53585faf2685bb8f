"""Decoding AVI files to grey frames and resizing them to the working size.

Decoder: PyAV, reading the luma plane. On 100 MJPEG AVIs of 128 frames at 112² (the EchoNet/SynthEcho format),
2 CPU cores, ``benchmarks/decode_cache.py`` measured: PyAV luma plane ~7,900 frames/s, OpenCV ``VideoCapture`` +
BGR→grey ~3,900 frames/s, PyAV ``to_ndarray(format="gray")`` ~1,300 frames/s (best of 3, shared machine). For
full-range YUV (MJPEG's ``yuvj*``) the luma plane *is* the grey image, so it is used without conversion; other pixel
formats go through swscale's grey conversion.
"""

from __future__ import annotations

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


def read_video_gray(path: Path | str) -> np.ndarray:
    """All frames of a video as grey ``(T, H, W)`` uint8.

    Raises :class:`UserError` naming the file when it is missing, cannot be decoded, or holds no frames.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"video {path} does not exist; restore it or remove it from the dataset's file list")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"video {path} has no video stream; replace it with a valid AVI")
            frames = [_grey(frame) for frame in container.decode(video=0)]
    except (av.FFmpegError, ValueError) as err:
        raise UserError(f"video {path} is corrupt or unreadable ({err}); replace it with a valid AVI") from err
    if not frames:
        raise UserError(f"video {path} holds no frames; replace it with a valid AVI")
    return np.stack(frames)


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


def working_crop(frames: np.ndarray) -> Crop:
    """The crop rule every dataset's frames ``(T, H, W)`` go through before resizing to the working size.

    Non-square frames are centre-cropped to a square of side ``min(H, W)``: echo sectors sit in the middle of
    the frame, so the crop loses only margin and keeps the anatomy's aspect ratio.
    """
    _, h, w = frames.shape
    return centre_square(h, w)


def crop_resize(images: np.ndarray, crop: Crop, size: int, nearest: bool = False) -> np.ndarray:
    """Cut ``crop`` out of images ``(T, H, W)`` (black outside the image) and resize to ``(T, size, size)``.

    Area interpolation for frames; ``nearest`` for label maps, whose values are class indices.
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
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(image, (size, size), interpolation=interpolation) for image in square])


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames ``(T, H, W)`` → ``(T, size, size)`` by :func:`working_crop` and area interpolation."""
    return crop_resize(frames, working_crop(frames), size)
