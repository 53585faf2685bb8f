"""Torch datasets over the decode cache: random training clips and the deterministic clips used for encoding.

The hot path is memmap slice → ``torch.from_numpy`` → float → normalise; videos are never decoded here. Every
random draw of item ``i`` in epoch ``e`` comes from ``np.random.default_rng([seed, e, i])``, so clips are
identical whatever ``num_workers`` is and a resumed run can replay any epoch.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from echobench.api import ClipBatch, ClipSpec, SampleMeta
from echobench.data.decode_cache import DecodeCache
from echobench.data.sampling import clip_indices
from echobench.errors import UserError

_TRAIN_STARTS = ("random", "fixed", "ed_es", "uniform")
_EVAL_STARTS = ("fixed", "evenly", "all", "ed_es", "traced", "uniform")


Prepare = Callable[[torch.Tensor, np.ndarray, SampleMeta], dict[str, Any]]


@dataclass
class ClipSample:
    """One training item: ``views`` holds ``clips_per_video`` tensors ``(1, T, H, W)``; ``frame_indices`` ``(V, T)``.

    ``ed_es`` is set only when the clip spec ``needs_ed_es``; ``labels`` holds the spec's tasks' targets, ``extras``
    what the method's ``prepare_sample`` returned.
    """

    views: list[torch.Tensor]
    frame_indices: np.ndarray
    fps: float
    video_id: str
    ed_es: tuple[int, int] | None
    labels: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    norm: tuple[float, float] = (0.0, 1.0)


class _CacheClips:
    """What both datasets share: the table's columns as arrays, normalisation, and reading clips from the cache."""

    def __init__(self, cache: DecodeCache, table: pd.DataFrame, spec: ClipSpec, mean: float, std: float) -> None:
        if spec.size != cache.size:
            raise ValueError(f"clip size {spec.size} differs from the decode cache's size {cache.size}")
        absent = [v for v in table["video_id"] if v not in cache]
        if absent:
            raise UserError(
                f"video {absent[0]!r} is not in decode cache {cache.folder}; rebuild the cache for this dataset"
            )
        self.cache, self.spec = cache, spec
        self.video_ids: list[str] = [str(v) for v in table["video_id"]]
        self.fps = table["fps"].to_numpy(np.float64)
        self.ed_es = table[["ed_frame", "es_frame"]].to_numpy(np.int64)
        if spec.start == "ed_es":
            unknown = np.flatnonzero(self.ed_es.min(axis=1) < 0)
            if len(unknown):
                raise UserError(
                    f"video {self.video_ids[unknown[0]]!r} ({len(unknown)} in all) has no ED/ES frames but the clip "
                    "spec samples between them; drop such videos or use a dataset with LV tracings"
                )
        if spec.start == "traced":
            self._check_traced_frames()
        # (x / 255 - mean) / std == x * scale - shift: one multiply and one subtract on the float tensor.
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std
        self.norm = (float(mean), float(std))

    def _check_traced_frames(self) -> None:
        for video_id, (ed, es) in zip(self.video_ids, self.ed_es, strict=True):
            num_frames = self.cache.num_frames(video_id)
            if max(ed, es) >= num_frames:
                raise UserError(
                    f"video {video_id!r} has traced frames ED {ed} / ES {es} but only {num_frames} frames; "
                    "fix its tracings (frame numbers count from 0)"
                )

    def indices(self, row: int, rng: np.random.Generator | None, count: int = 1) -> np.ndarray:
        ed, es = self.ed_es[row]
        num_frames = self.cache.num_frames(self.video_ids[row])
        fps = float(self.fps[row])
        return clip_indices(num_frames, self.spec, rng, ed_es=(int(ed), int(es)), count=count, fps=fps)

    def raw(self, row: int, indices: np.ndarray) -> torch.Tensor:
        """The uint8 frames ``(V, T, H, W)`` for index rows ``(V, T)``."""
        frames = self.cache.video(self.video_ids[row])[indices.reshape(-1)]
        return torch.from_numpy(np.ascontiguousarray(frames)).view(len(indices), self.spec.frames, *frames.shape[1:])

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """Normalised clips ``(V, 1, T, H, W)`` float32 from uint8 frames ``(V, T, H, W)``."""
        return raw.to(torch.float32).mul_(self.scale).sub_(self.shift).unsqueeze(1)

    def clips(self, row: int, indices: np.ndarray) -> torch.Tensor:
        """Normalised clips ``(len(indices), 1, T, H, W)`` float32 for index rows ``(V, T)``."""
        return self.normalise(self.raw(row, indices))


class ClipDataset(Dataset[ClipSample]):
    """Training clips: per video, ``spec.clips_per_video`` clips with distinct random starts (or the ED→ES clip,
    or the fixed-start clip, repeated ``clips_per_video`` times).

    ``labels`` maps task names to per-row targets (the clip spec's ``tasks``); ``prepare`` is a method's
    ``prepare_sample``, run here, i.e. in the DataLoader workers, on the raw uint8 frames.
    """

    def __init__(
        self,
        cache: DecodeCache,
        table: pd.DataFrame,
        spec: ClipSpec,
        mean: float,
        std: float,
        seed: int,
        labels: dict[str, np.ndarray] | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        if spec.start not in _TRAIN_STARTS:
            raise ValueError(f"training clips use start in {_TRAIN_STARTS}, not {spec.start!r}; see EvalClipDataset")
        self._clips = _CacheClips(cache, table, spec, mean, std)
        self.spec, self.seed, self.epoch = spec, seed, 0
        self.labels = labels or {}
        self.prepare = prepare

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws (starts and order) items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._clips.video_ids)

    def __getitem__(self, i: int) -> ClipSample:
        spec, clips = self.spec, self._clips
        if spec.start == "random":
            rng = np.random.default_rng([self.seed, self.epoch, i])
            indices = clips.indices(i, rng, count=spec.clips_per_video)
        else:
            indices = np.repeat(clips.indices(i, None), spec.clips_per_video, axis=0)
        ed, es = (int(v) for v in clips.ed_es[i])
        raw = clips.raw(i, indices)
        views = list(clips.normalise(raw))
        extras: dict[str, Any] = {}
        if self.prepare is not None:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, i, 1]).generate_state(1)[0])
            meta = SampleMeta(video_id=clips.video_ids[i], fps=float(clips.fps[i]), ed_es=(ed, es), seed=seed)
            extras = self.prepare(raw, indices, meta)
        return ClipSample(
            views=views,
            frame_indices=indices,
            fps=float(clips.fps[i]),
            video_id=clips.video_ids[i],
            ed_es=(ed, es) if spec.needs_ed_es else None,
            labels={task: values[i] for task, values in self.labels.items()},
            extras=extras,
            norm=clips.norm,
        )


def collate_clips(samples: list[ClipSample]) -> ClipBatch:
    """Stack training samples into a :class:`ClipBatch` (``ed_es`` filled when the samples carry it)."""
    views = [torch.stack(view) for view in zip(*(s.views for s in samples), strict=True)]
    ed_es = None if samples[0].ed_es is None else torch.tensor([s.ed_es for s in samples], dtype=torch.long)
    return ClipBatch(
        views=views,
        frame_indices=torch.from_numpy(np.stack([s.frame_indices for s in samples])),
        fps=torch.tensor([s.fps for s in samples], dtype=torch.float32),
        video_ids=[s.video_id for s in samples],
        ed_es=ed_es,
        labels={task: torch.as_tensor(np.stack([s.labels[task] for s in samples])) for task in samples[0].labels},
        extras={key: torch.stack([torch.as_tensor(s.extras[key]) for s in samples]) for key in samples[0].extras},
        norm=samples[0].norm,
    )


class StepBatches(Sampler[list[tuple[int, int]]]):
    """Batches as a pure function of ``(seed, step)``: epoch ``e`` visits a permutation drawn from ``(seed, e)``.

    Items are ``(epoch, index)`` keys for :class:`EpochItems`. Resuming at step ``s`` yields exactly the batches the
    uninterrupted run would have seen, and the training loop counts steps, not epochs. With ``world_size`` > 1
    (distributed pretraining) ``batch_size`` is the global batch and this rank yields its ``rank``-th equal slice.
    """

    def __init__(
        self, num_items: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if num_items < batch_size:
            raise UserError(
                f"the training split has {num_items} videos, fewer than one batch of {batch_size}; "
                "lower pretrain.batch_size or add videos"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.per_epoch = num_items // batch_size
        self.local = batch_size // world_size
        self.rank = rank

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            epoch, offset = divmod(step, self.per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
            chunk = order[offset * self.batch_size : (offset + 1) * self.batch_size]
            chunk = chunk[self.rank * self.local : (self.rank + 1) * self.local]
            yield [(epoch, int(i)) for i in chunk]
            step += 1


class EpochItems(Dataset[ClipSample]):
    """Indexes a :class:`ClipDataset` by ``(epoch, item)`` so the epoch reaches (persistent) worker processes."""

    def __init__(self, clips: ClipDataset) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> ClipSample:
        epoch, index = key
        self.clips.set_epoch(epoch)
        return self.clips[index]


def step_batches(
    clips: ClipDataset,
    batch_size: int,
    seed: int,
    start_step: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[ClipBatch]:
    """Training batches from ``start_step`` on, forever (this rank's slice of each global batch)."""
    loader = DataLoader(
        EpochItems(clips),
        batch_sampler=StepBatches(len(clips), batch_size, seed, start_step, rank, world_size),
        collate_fn=collate_clips,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
    return iter(loader)


class EvalClipDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """Every deterministic clip of every video (``fixed``/``evenly``/``all``/``ed_es``/``traced``), for encoding.

    Item ``k`` is ``(clip (1, T, H, W), video_row, clip_number)``: ``video_row`` is the video's row in ``table``,
    ``clip_number`` its clip's rank within the video.
    """

    def __init__(self, cache: DecodeCache, table: pd.DataFrame, spec: ClipSpec, mean: float, std: float) -> None:
        if spec.start not in _EVAL_STARTS:
            raise ValueError(f"evaluation clips use start in {_EVAL_STARTS}, not {spec.start!r}")
        self._clips = _CacheClips(cache, table, spec, mean, std)
        per_video = [self._clips.indices(row, None) for row in range(len(table))]
        if spec.frame_control == "shuffle":
            per_video = [
                shuffled(str(video_id), rows) for video_id, rows in zip(table["video_id"], per_video, strict=True)
            ]
        elif spec.frame_control == "freeze":
            per_video = [np.repeat(rows[:, :1], rows.shape[1], axis=1) for rows in per_video]
        self.video_rows = np.repeat(np.arange(len(table)), [len(p) for p in per_video])
        self.clip_numbers = np.concatenate([np.arange(len(p)) for p in per_video]) if per_video else np.zeros(0, int)
        self.frame_indices = np.concatenate(per_video) if per_video else np.zeros((0, spec.frames), np.int64)

    def __len__(self) -> int:
        return len(self.video_rows)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, int]:
        row = int(self.video_rows[k])
        return self._clips.clips(row, self.frame_indices[k : k + 1])[0], row, int(self.clip_numbers[k])


def shuffled(video_id: str, clips: np.ndarray) -> np.ndarray:
    """Each clip's frame indices ``(n, T)`` in a random order drawn from the video id and the clip's rank alone,
    so a video's shuffled clips are the same in every split, table and process (the temporal control)."""
    key = zlib.crc32(video_id.encode())
    return np.stack([np.random.default_rng((key, rank)).permutation(row) for rank, row in enumerate(clips)])


def collate_eval(
    samples: list[tuple[torch.Tensor, int, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(clips (B, 1, T, H, W), video_rows (B,), clip_numbers (B,))``."""
    clips, rows, numbers = zip(*samples, strict=True)
    return torch.stack(clips), torch.tensor(rows, dtype=torch.long), torch.tensor(numbers, dtype=torch.long)
