"""Pretraining a method on a dataset, or reusing the checkpoint of an identical earlier run.

A checkpoint's identity (its hash) covers everything that changes the weights: method name and version, method
config, the pretraining config (except knobs that do not change results, such as logging cadence), the dataset's
content hash and the splits pretrained on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from echobench import checkpoint as ckpt
from echobench.api import ClipBatch, Method
from echobench.config import PretrainConfig, stable_hash, to_dict
from echobench.console import console
from echobench.data.base import VideoDataset
from echobench.data.decode_cache import DecodeCache
from echobench.data.loader import ClipDataset, step_batches
from echobench.paths import checkpoints_dir
from echobench.train import TrainLoop

RESULT_NEUTRAL_FIELDS = ("checkpoint_every", "log_every", "num_workers", "device")


@dataclass
class Pretrained:
    method: Method
    checkpoint_hash: str
    folder: Path
    meta: ckpt.CheckpointMeta


def checkpoint_hash(method: Method, pretrain: PretrainConfig, dataset: VideoDataset, splits: tuple[str, ...]) -> str:
    relevant = {k: v for k, v in to_dict(pretrain).items() if k not in RESULT_NEUTRAL_FIELDS}
    if not method.trainable:
        # An untrained encoder depends only on its config and the init seed, not on data or the optimiser.
        return stable_hash(method.name, method.version, method.config, {"seed": pretrain.seed})
    return stable_hash(
        method.name, method.version, method.config, relevant, dataset.name, dataset.content_hash(), list(splits)
    )


def build_method(method_cls: type[Method], config: Any, seed: int) -> Method:
    torch.manual_seed(seed)
    return method_cls(config)


def pretrain_data(
    method: Method, dataset: VideoDataset, cache: DecodeCache, splits: tuple[str, ...], seed: int
) -> ClipDataset:
    table = dataset.table[dataset.table["split"].isin(splits)].reset_index(drop=True)
    mean, std = normalisation(dataset, cache)
    return ClipDataset(cache, table, method.clip_spec(), mean, std, seed)


def normalisation(dataset: VideoDataset, cache: DecodeCache) -> tuple[float, float]:
    """Mean/std of the training split, the same for every method and protocol."""
    return cache.stats(list(dataset.split_table("train")["video_id"]))


@dataclass
class Located:
    """A freshly built method and where its checkpoint lives; ``ready`` when no training is needed."""

    method: Method
    checkpoint_hash: str
    folder: Path
    meta: ckpt.CheckpointMeta | None

    @property
    def ready(self) -> bool:
        return not self.method.trainable or (self.meta is not None and self.meta.complete)


def locate(
    method_cls: type[Method],
    method_config: Any,
    pretrain: PretrainConfig,
    dataset: VideoDataset,
    splits: tuple[str, ...],
) -> Located:
    method = build_method(method_cls, method_config, pretrain.seed)
    key = checkpoint_hash(method, pretrain, dataset, splits)
    folder = checkpoints_dir() / method.name / key
    return Located(method, key, folder, ckpt.read_meta(folder))


def obtain(
    located: Located,
    pretrain: PretrainConfig,
    dataset: VideoDataset,
    cache: DecodeCache,
    splits: tuple[str, ...],
    sink: Any = None,
    stop_after: int | None = None,
) -> Pretrained:
    """Return the pretrained method, training (or resuming) only when no finished checkpoint matches."""
    method, key, folder, meta = located.method, located.checkpoint_hash, located.folder, located.meta
    if meta is not None and meta.complete:
        ckpt.load_model(folder, method, method=method.name)
        return Pretrained(method, key, folder, meta)

    pretrained_ids = sorted(dataset.table[dataset.table["split"].isin(splits)]["video_id"])
    extra = {
        "checkpoint_hash": key,
        "pretrain_config": to_dict(pretrain),
        "dataset": dataset.name,
        "dataset_hash": dataset.content_hash(),
        "pretrain_splits": list(splits),
        "pretrained_videos_hash": stable_hash(pretrained_ids),
        "pretrained_video_ids": pretrained_ids,
        "num_pretrained_videos": len(pretrained_ids),
    }

    def make_meta(step: int, complete: bool) -> ckpt.CheckpointMeta:
        return ckpt.CheckpointMeta(
            method=method.name,
            method_version=method.version,
            method_config=dataclasses.asdict(method.config),
            step=step,
            total_steps=pretrain.steps if method.trainable else 0,
            complete=complete,
            extra=extra,
        )

    if not method.trainable:
        ckpt.save_model(folder, method, make_meta(0, True))
        return Pretrained(method, key, folder, make_meta(0, True))

    clips = pretrain_data(method, dataset, cache, splits, pretrain.seed)

    def batches(start_step: int) -> Iterator[ClipBatch]:
        return step_batches(clips, pretrain.batch_size, pretrain.seed, start_step, pretrain.num_workers)

    loop = TrainLoop(
        model=method,
        step_fn=method.pretrain_step,
        config=pretrain,
        folder=folder,
        make_meta=make_meta,
        after_step=method.after_step,
        no_decay=frozenset(method.no_weight_decay()),
        sink=sink,
        description=f"pretrain {method.name}",
        stop_after=stop_after,
    )
    if meta is not None:
        console.print(f"resuming {method.name} pretraining from step {meta.step}/{pretrain.steps} ({folder})")
    loop.run(batches)
    method.eval()
    final = ckpt.read_meta(folder)
    assert final is not None
    return Pretrained(method, key, folder, final)
