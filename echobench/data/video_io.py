"""Decoding AVI files to grey frames and resizing them to the working size.

Decoder: PyAV, reading the luma plane. On 100 MJPEG AVIs of 128 frames at 112² (the EchoNet/SynthEcho format),
2 CPU cores, ``benchmarks/decode_cache.py`` measured: PyAV luma plane ~7,900 frames/s, OpenCV ``VideoCapture`` +
BGR→grey ~3,900 frames/s, PyAV ``to_ndarray(format="gray")`` ~1,300 frames/s (best of 3, shared machine). For
full-range YUV (MJPEG's ``yuvj*``) the luma plane *is* the grey image, so it is used without conversion; other pixel
formats go through swscale's grey conversion.
"""

from __future__ import annotations

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


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize grey frames ``(T, H, W)`` to ``(T, size, size)`` with area interpolation.

    Non-square frames are centre-cropped to a square of side ``min(H, W)`` first: echo sectors sit in the middle
    of the frame, so the crop loses only margin and keeps the anatomy's aspect ratio (padding would waste
    resolution on blank borders). Frames already at the size are returned unchanged.
    """
    _, h, w = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frames[:, top : top + side, left : left + side]
    if side == size:
        return square
    return np.stack([cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA) for frame in square])
