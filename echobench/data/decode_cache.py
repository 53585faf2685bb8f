"""Decode cache: every video decoded once to grey uint8 at the working size, stored as one memory-mapped file.

Folder ``<root>/<dataset.name>-<content_hash>-<size>/`` holds ``frames.u8`` (all videos' frames concatenated,
``(total_frames, size, size)`` uint8, C order) and ``index.json`` (per video: ``offset`` = first frame's row in
``frames.u8``, ``num_frames`` = frames actually decoded, which is the truth when the file list disagrees;
``top``/``left``/``side`` = the source square the frames were cut from, see :class:`~echobench.data.video_io.Crop`). The
folder is written with :func:`echobench.atomic.atomic_dir`, so it exists only once complete. ``stats.json`` memoises
normalisation statistics per set of videos.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from echobench import paths
from echobench.atomic import atomic_dir, write_text_atomic
from echobench.console import progress_bar
from echobench.data.base import VideoDataset
from echobench.data.video_io import Crop, crop_resize, working_crop

#: Bump when decoding or resizing changes, so caches written by older code are rebuilt.
CACHE_FORMAT = 3
#: Frames per video used for normalisation statistics (evenly spaced; all frames of shorter videos).
STATS_FRAMES_PER_VIDEO = 16


def stats_frames(num_frames: int, per_video: int = STATS_FRAMES_PER_VIDEO) -> np.ndarray:
    """Frame indices of one video used by :meth:`DecodeCache.stats`: ``per_video`` evenly spaced, rounded, unique."""
    return np.unique(np.rint(np.linspace(0, num_frames - 1, min(num_frames, per_video))).astype(np.int64))


def _decode(read: Callable[[str], np.ndarray], path: str, size: int) -> tuple[np.ndarray, Crop]:
    frames = read(path)
    crop = working_crop(frames)
    return np.ascontiguousarray(crop_resize(frames, crop, size)), crop


def _decode_all(
    read: Callable[[str], np.ndarray], video_paths: list[str], size: int
) -> Iterator[tuple[np.ndarray, Crop]]:
    """Decoded videos in order, decoding a few ahead on threads.

    PyAV and cv2 release the GIL for part of the work (measured: +13 % frames/s with 2 threads on 2 cores). The
    look-ahead is bounded so memory stays small, and unstarted work is cancelled when a video fails.
    """
    workers = os.cpu_count() or 1
    pending: deque[Future[tuple[np.ndarray, Crop]]] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for path in video_paths:
                pending.append(pool.submit(_decode, read, path, size))
                if len(pending) > 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class DecodeCache:
    """Read access to a built cache folder; create one with :meth:`build`.

    The memmap is opened lazily and dropped when pickled, so DataLoader workers (fork or spawn) each map the file
    themselves instead of receiving a copy of the frames.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.size: int = index["size"]
        self._videos: dict[str, dict[str, int]] = index["videos"]
        self._total = sum(v["num_frames"] for v in self._videos.values())
        self._frames: np.ndarray | None = None

    @property
    def key(self) -> str:
        """The cache folder's name: ``<dataset>-<content_hash>-<size>``."""
        return self.folder.name

    @classmethod
    def build(cls, dataset: VideoDataset, size: int, root: Path | None = None, progress: bool = True) -> DecodeCache:
        """Open the cache of ``dataset`` at ``size``, decoding every video first if it does not exist yet."""
        root = Path(root) if root is not None else paths.decode_cache_dir()
        folder = root / f"{dataset.name}-{dataset.content_hash()}-{size}"
        if _is_complete(folder):
            return cls(folder)
        table = dataset.table
        videos: dict[str, dict[str, int]] = {}
        listed_differ: dict[str, int] = {}
        bar = progress_bar()
        bar.disable = not progress
        with atomic_dir(folder) as tmp, bar:
            task = bar.add_task(f"decode {dataset.name}", total=len(table), info=f"{size}px")
            offset = 0
            with open(tmp / "frames.u8", "wb") as out:
                decoded = _decode_all(dataset.read_frames, list(table["path"]), size)
                for video_id, listed, (frames, crop) in zip(
                    table["video_id"], table["num_frames"], decoded, strict=True
                ):
                    out.write(frames.data)
                    videos[video_id] = {"offset": offset, "num_frames": len(frames), **crop.as_dict()}
                    if len(frames) != listed:
                        listed_differ[video_id] = int(listed)
                    offset += len(frames)
                    bar.advance(task)
            index: dict[str, Any] = {
                "format": CACHE_FORMAT,
                "dataset": dataset.name,
                "dataset_version": dataset.version,
                "content_hash": dataset.content_hash(),
                "size": size,
                "videos": videos,
                "listed_num_frames_differ": listed_differ,
            }
            # index.json is written last: together with atomic_dir it marks a complete cache.
            write_text_atomic(tmp / "index.json", json.dumps(index))
        return cls(folder)

    # -- frames ---------------------------------------------------------------------------------------------------

    @property
    def frames(self) -> np.ndarray:
        """All cached frames ``(total_frames, size, size)`` uint8, read-only memmap."""
        if self._frames is None:
            shape = (self._total, self.size, self.size)
            self._frames = (
                np.memmap(self.folder / "frames.u8", dtype=np.uint8, mode="r", shape=shape)
                if self._total
                else np.empty(shape, np.uint8)
            )
        return self._frames

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_frames": None}

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._videos

    def video(self, video_id: str) -> np.ndarray:
        """Frames of one video ``(T, size, size)`` uint8: a read-only view of the memmap (no copy)."""
        entry = self._entry(video_id)
        return self.frames[entry["offset"] : entry["offset"] + entry["num_frames"]]

    def num_frames(self, video_id: str) -> int:
        """Number of frames decoded from the video (may differ from the file list's count)."""
        return self._entry(video_id)["num_frames"]

    def crop(self, video_id: str) -> Crop:
        """The source-pixel square the video's frames were cut from before resizing."""
        entry = self._entry(video_id)
        return Crop(top=entry["top"], left=entry["left"], side=entry["side"])

    def working_mask(self, video_id: str, label_map: np.ndarray) -> np.ndarray:
        """A label map ``(H, W)`` at the video's source resolution → ``(size, size)`` aligned with its frames."""
        return crop_resize(np.asarray(label_map, dtype=np.uint8)[None], self.crop(video_id), self.size, nearest=True)[0]

    def _entry(self, video_id: str) -> dict[str, int]:
        try:
            return self._videos[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in decode cache {self.folder}") from None

    # -- statistics -----------------------------------------------------------------------------------------------

    def stats(self, video_ids: Iterable[str], frames_per_video: int = STATS_FRAMES_PER_VIDEO) -> tuple[float, float]:
        """Pixel mean and (population) std in [0, 1] units over the given videos, e.g. the training split.

        Uses :func:`stats_frames` of each video (a deterministic subsample, for speed). Memoised in
        ``stats.json`` under a hash of the sorted ids and ``frames_per_video``.
        """
        ids = sorted(str(v) for v in video_ids)
        if not ids:
            raise ValueError("stats need at least one video")
        key = hashlib.sha256(json.dumps([frames_per_video, ids]).encode()).hexdigest()[:16]
        memo_path = self.folder / "stats.json"
        memo: dict[str, list[float]] = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
        if key not in memo:
            total = total_sq = count = 0.0
            for video_id in ids:
                sample = self.video(video_id)[stats_frames(self.num_frames(video_id), frames_per_video)].astype(
                    np.float64
                )
                total += sample.sum()
                total_sq += np.square(sample).sum()
                count += sample.size
            mean = total / count
            std = np.sqrt(max(total_sq / count - mean**2, 0.0))
            memo[key] = [mean / 255.0, std / 255.0]
            write_text_atomic(memo_path, json.dumps(memo))
        mean, std = memo[key]
        return float(mean), float(std)


def _is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a cache of the current format whose frame file has the indexed size."""
    try:
        index = json.loads((folder / "index.json").read_text())
        expected = sum(v["num_frames"] for v in index["videos"].values()) * index["size"] ** 2
        return index.get("format") == CACHE_FORMAT and (folder / "frames.u8").stat().st_size == expected
    except (OSError, ValueError, KeyError, TypeError):
        return False
