"""Decode cache: every video decoded once to grey uint8 at the working size, stored as one memory-mapped file.

Folder ``<root>/<dataset.name>-<content_hash>-<size>/`` holds ``frames.u8`` (all videos' frames concatenated,
``(total_frames, size, size)`` uint8, C order) and ``index.json`` (per video: ``offset`` = first frame's row in
``frames.u8``, ``num_frames`` = frames actually decoded, which is the truth when the file list disagrees;
``top``/``left``/``side`` = the source square the frames were cut from, see :class:`~echobench.data.video_io.Crop`). The
folder is written with :func:`echobench.atomic.atomic_dir`, so it exists only once complete. ``stats.json`` memoises
normalisation statistics per set of videos. ``index.json`` also lists under ``skipped`` the videos a build left out
because they were unreadable (only when asked to: ``echobench data prepare --skip-bad``), with the reason.

``echobench data prepare`` builds in worker processes: each video is decoded into its own chunk file under
``<root>/.<cache folder name>.chunks/`` (written atomically), so an interrupted build keeps the videos already done
and resumes with the rest; the chunks are then joined into the cache folder atomically and removed.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from echobench import paths
from echobench.atomic import atomic_dir, atomic_path, write_text_atomic
from echobench.console import progress_bar
from echobench.data.base import VideoDataset
from echobench.data.video_io import Crop, crop_resize, mask_overlays, working_crop
from echobench.errors import UserError
from echobench.locks import exclusive

#: Bump when decoding or resizing changes, so caches written by older code are rebuilt (5: enlarging is bilinear).
CACHE_FORMAT = 5
#: Frames per video used for normalisation statistics (evenly spaced; all frames of shorter videos).
STATS_FRAMES_PER_VIDEO = 16


def stats_frames(num_frames: int, per_video: int = STATS_FRAMES_PER_VIDEO) -> np.ndarray:
    """Frame indices of one video used by :meth:`DecodeCache.stats`: ``per_video`` evenly spaced, rounded, unique."""
    return np.unique(np.rint(np.linspace(0, num_frames - 1, min(num_frames, per_video))).astype(np.int64))


def _decode(read: Callable[[str], np.ndarray], path: str, size: int) -> tuple[np.ndarray, Crop]:
    frames = mask_overlays(read(path))
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
        #: Videos left out as unreadable (``data prepare --skip-bad``): video id -> reason.
        self.skipped: dict[str, str] = index.get("skipped", {})
        self._total = sum(v["num_frames"] for v in self._videos.values())
        self._frames: np.ndarray | None = None

    @property
    def key(self) -> str:
        """The cache folder's name: ``<dataset>-<content_hash>-<size>``."""
        return self.folder.name

    @classmethod
    def build(
        cls,
        dataset: VideoDataset,
        size: int,
        root: Path | None = None,
        progress: bool = True,
        *,
        workers: int | None = None,
        skip_bad: bool = False,
    ) -> DecodeCache:
        """Open the cache of ``dataset`` at ``size``, decoding every video first if it does not exist yet.

        Without ``workers`` the videos are decoded on threads of this process and an unreadable one fails the build.
        With ``workers`` (``echobench data prepare``) they are decoded by that many processes into resumable
        chunks (see the module doc); ``skip_bad`` then leaves unreadable videos out, recording them in the index
        instead of failing. Videos an existing cache records as skipped are dropped from ``dataset.table``, so
        every user of the cache sees the same set of videos.
        """
        root = Path(root) if root is not None else paths.decode_cache_dir()
        folder = root / f"{dataset.name}-{dataset.content_hash()}-{size}"
        if not _is_complete(folder):
            with exclusive(folder, f"decoding {dataset.name}"):
                if not _is_complete(folder):
                    if workers is None and not skip_bad:
                        _build_in_process(dataset, size, folder, progress)
                    else:
                        _build_from_chunks(dataset, size, folder, workers or 1, skip_bad, progress)
        cache = cls(folder)
        if cache.skipped:
            kept = ~dataset.table["video_id"].isin(list(cache.skipped))
            dataset.table = dataset.table[kept].reset_index(drop=True)
        return cache

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


def _write_cache(
    folder: Path,
    dataset: VideoDataset,
    size: int,
    decoded: Iterable[tuple[str, int, np.ndarray, Crop]],
    skipped: dict[str, str],
    advance: Callable[[], None],
) -> None:
    """Write the cache folder atomically from ``(video_id, listed frames, frames, crop)`` in table order."""
    videos: dict[str, dict[str, int]] = {}
    listed_differ: dict[str, int] = {}
    with atomic_dir(folder) as tmp:
        offset = 0
        with open(tmp / "frames.u8", "wb") as out:
            for video_id, listed, frames, crop in decoded:
                out.write(frames.data)
                videos[video_id] = {"offset": offset, "num_frames": len(frames), **crop.as_dict()}
                if len(frames) != listed:
                    listed_differ[video_id] = listed
                offset += len(frames)
                advance()
        index: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "dataset": dataset.name,
            "dataset_version": dataset.version,
            "content_hash": dataset.content_hash(),
            "size": size,
            "videos": videos,
            "listed_num_frames_differ": listed_differ,
            "skipped": skipped,
        }
        # index.json is written last: together with atomic_dir it marks a complete cache.
        write_text_atomic(tmp / "index.json", json.dumps(index))


def _build_in_process(dataset: VideoDataset, size: int, folder: Path, progress: bool) -> None:
    table = dataset.table
    bar = progress_bar()
    bar.disable = not progress
    with bar:
        task = bar.add_task(f"decode {dataset.name}", total=len(table), info=f"{size}px")
        decoded = _decode_all(dataset.read_frames, list(table["path"]), size)
        rows = (
            (str(video_id), int(listed), frames, crop)
            for video_id, listed, (frames, crop) in zip(table["video_id"], table["num_frames"], decoded, strict=True)
        )
        try:
            _write_cache(folder, dataset, size, rows, {}, lambda: bar.advance(task))
        except UserError as err:
            raise UserError(
                f"{err}; or leave unreadable videos out with `echobench data prepare --dataset {dataset.name} "
                f"--data-root {dataset.root} --skip-bad`"
            ) from err


#: The reader of the dataset being prepared, set once per worker process by :func:`_init_worker`.
_WORKER_READ: Callable[[str], np.ndarray] | None = None


def _init_worker(read: Callable[[str], np.ndarray]) -> None:
    global _WORKER_READ
    _WORKER_READ = read
    # One process per core already: OpenCV's own resize threads would only oversubscribe the cores.
    cv2.setNumThreads(1)


def _decode_chunk_in_worker(path: str, size: int, target: Path) -> str | None:
    assert _WORKER_READ is not None, "worker started without _init_worker"
    return _decode_chunk(_WORKER_READ, path, size, target)


def _decode_chunk(read: Callable[[str], np.ndarray], path: str, size: int, target: Path) -> str | None:
    """Decode one video into the chunk file ``target``; the error message instead when it is unreadable."""
    try:
        frames, crop = _decode(read, path, size)
    except UserError as err:
        return str(err)
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        np.savez(out, frames=frames, crop=np.array([crop.top, crop.left, crop.side], dtype=np.int64))
    return None


def _load_chunk(path: Path) -> tuple[np.ndarray, Crop]:
    with np.load(path) as chunk:
        top, left, side = (int(v) for v in chunk["crop"])
        return chunk["frames"], Crop(top=top, left=left, side=side)


def _decode_chunks(
    read: Callable[[str], np.ndarray], todo: list[tuple[str, str, Path]], size: int, workers: int
) -> Iterator[tuple[str, str | None]]:
    """``(video_id, error or None)`` as each chunk of ``todo`` = ``(video_id, path, chunk file)`` finishes."""
    if workers == 1:
        for video_id, path, target in todo:
            yield video_id, _decode_chunk(read, path, size, target)
        return
    # spawn, not fork: the parent may hold decoder or BLAS threads, which a forked child would inherit mid-state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(read,)) as pool:
        futures = {pool.submit(_decode_chunk_in_worker, path, size, target): vid for vid, path, target in todo}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()


def _build_from_chunks(
    dataset: VideoDataset, size: int, folder: Path, workers: int, skip_bad: bool, progress: bool
) -> None:
    table = dataset.table
    chunks = folder.parent / f".{folder.name}.chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    targets = {str(v): chunks / f"{hashlib.sha256(str(v).encode()).hexdigest()[:24]}.npz" for v in table["video_id"]}
    todo = [(str(v), str(p), targets[str(v)]) for v, p in zip(table["video_id"], table["path"], strict=True)]
    todo = [item for item in todo if not item[2].is_file()]
    bad: dict[str, str] = {}
    bar = progress_bar()
    bar.disable = not progress
    with bar:
        task = bar.add_task(
            f"decode {dataset.name}", total=len(table), completed=len(table) - len(todo), info=f"{workers} workers"
        )
        for video_id, error in _decode_chunks(dataset.read_frames, todo, size, workers):
            if error is not None:
                bad[video_id] = error
            bar.advance(task)
        if bad and not skip_bad:
            first = next(iter(bad))
            names = ", ".join(list(bad)[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise UserError(
                f"{len(bad)} videos of {dataset.name} are unreadable: {names} ({first}: {bad[first]}); replace them, "
                "or rerun with --skip-bad to leave them out (videos decoded so far are kept for the rerun)"
            )
        kept = [(str(v), int(n)) for v, n in zip(table["video_id"], table["num_frames"], strict=True) if v not in bad]
        join = bar.add_task("write cache", total=len(kept), info=f"{size}px")
        rows = ((video_id, listed, *_load_chunk(targets[video_id])) for video_id, listed in kept)
        _write_cache(folder, dataset, size, rows, bad, lambda: bar.advance(join))
    shutil.rmtree(chunks, ignore_errors=True)


def _is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a cache of the current format whose frame file has the indexed size."""
    try:
        index = json.loads((folder / "index.json").read_text())
        expected = sum(v["num_frames"] for v in index["videos"].values()) * index["size"] ** 2
        return index.get("format") == CACHE_FORMAT and (folder / "frames.u8").stat().st_size == expected
    except (OSError, ValueError, KeyError, TypeError):
        return False
