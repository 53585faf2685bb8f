"""Pretraining a method on a dataset, or reusing the checkpoint of an identical earlier run.

A checkpoint's identity (its hash) covers everything that changes the weights: method name and version, method
config, the pretraining config (except knobs that do not change results, such as logging cadence; a starting
weight file by its content hash), the dataset's content hash, the splits pretrained on and the label filter on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from echobench import checkpoint as ckpt
from echobench import distributed
from echobench.api import ClipBatch, Method
from echobench.config import PretrainConfig, pretrain_record, stable_hash
from echobench.console import console
from echobench.data.base import VideoDataset
from echobench.data.decode_cache import DecodeCache
from echobench.data.loader import ClipDataset, step_batches
from echobench.data.tasks import get_task
from echobench.errors import UserError
from echobench.init_weights import file_hash, load_init_weights
from echobench.paths import checkpoints_dir
from echobench.run_length import RunLength, run_length, sized
from echobench.train import TrainLoop, complete_groups

RESULT_NEUTRAL_FIELDS = ("checkpoint_every", "log_every", "num_workers", "device")


@dataclass
class Pretrained:
    method: Method
    checkpoint_hash: str
    folder: Path
    meta: ckpt.CheckpointMeta


def checkpoint_hash(
    method: Method,
    pretrain: PretrainConfig,
    dataset: VideoDataset,
    splits: tuple[str, ...],
    pretrain_filter: str | None = None,
) -> str:
    relevant = {k: v for k, v in pretrain_record(pretrain).items() if k not in RESULT_NEUTRAL_FIELDS}
    if pretrain.init_from is not None:
        relevant["init_from"] = file_hash(pretrain.init_from)
    data = [dataset.name, dataset.content_hash()]
    if not method.trainable:
        # An untrained encoder depends on its config, the init seed and any starting weights, not on the
        # optimiser; the data is still part of its identity so two datasets never share results.
        return stable_hash(method.name, method.version, method.config, {"seed": pretrain.seed}, relevant, data)
    return stable_hash(method.name, method.version, method.config, relevant, *data, list(splits), pretrain_filter)


def method_loop(
    method: Method,
    config: PretrainConfig,
    folder: Path,
    make_meta: Any,
    *,
    steps_per_epoch: int,
    description: str,
    sink: Any = None,
    stop_after: int | None = None,
) -> TrainLoop:
    """The training loop wired to a method's hooks and (optional) parameter groups."""
    custom = method.param_groups()
    return TrainLoop(
        model=method,
        step_fn=method.pretrain_step,
        config=config,
        folder=folder,
        make_meta=make_meta,
        after_step=method.after_step,
        before_optimizer_step=method.on_before_optimizer_step,
        steps_per_epoch=steps_per_epoch,
        groups=None if custom is None else complete_groups(method, custom, f"method {method.name!r}"),
        sink=sink,
        description=description,
        stop_after=stop_after,
    )


def parse_filter(pretrain_filter: str) -> tuple[str, float]:
    """``"TASK=VALUE"`` → the task name and the label value kept."""
    name, sep, raw = pretrain_filter.partition("=")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not sep or not name.strip() or not np.isfinite(value):
        raise UserError(
            f"data.pretrain_filter {pretrain_filter!r} must be TASK=VALUE with a numeric label value, e.g. ef_anomaly=0"
        )
    get_task(name.strip())
    return name.strip(), value


def pretraining_table(
    dataset: VideoDataset, splits: tuple[str, ...], pretrain_filter: str | None = None
) -> pd.DataFrame:
    """The videos a checkpoint is pretrained on: the named splits, keeping only rows whose task label equals the
    filter's value when ``pretrain_filter`` is set (rows without that label are dropped)."""
    table = dataset.table[dataset.table["split"].isin(splits)].reset_index(drop=True)
    if pretrain_filter is None:
        return table
    name, value = parse_filter(pretrain_filter)
    targets, valid = get_task(name).targets(table, dataset.name)
    kept = table[valid & (np.asarray(targets, dtype=np.float64) == value)].reset_index(drop=True)
    if kept.empty:
        raise UserError(
            f"data.pretrain_filter {pretrain_filter!r} keeps no video of splits {list(splits)} of {dataset.name}; "
            "check the task's label values"
        )
    return kept


def build_method(method_cls: type[Method], config: Any, seed: int) -> Method:
    """The plugin built from ``config``; a ``ValueError`` it raises on its config is a config error, not a crash."""
    torch.manual_seed(seed)
    try:
        return method_cls(config)
    except (ValueError, UserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"method config of {method_cls.name!r} rejected: {first}; fix it with --set method.FIELD=VALUE"
        ) from None


def pretrain_data(
    method: Method, dataset: VideoDataset, cache: DecodeCache, table: pd.DataFrame, seed: int
) -> ClipDataset:
    """Training clips of ``table`` with the method's clip spec, its tasks' labels and its worker-side hook."""
    spec = method.clip_spec()
    mean, std = normalisation(dataset, cache)
    labels = {}
    # Labels reach pretraining from the training split only, whatever splits are pretrained on: a method trained
    # on labels (the supervised ceiling) must never fit validation or test labels.
    in_train = (table["split"] == "train").to_numpy()
    for name in spec.tasks:
        task = get_task(name)
        targets, valid = task.targets(table, dataset.name)
        if not (valid & in_train).any():
            raise UserError(
                f"dataset {dataset.name} has no training-split labels for task {name}, which method "
                f"{method.name!r} trains on; choose a task the dataset labels"
            )
        missing = -1 if task.is_classification else np.nan
        labels[name] = np.where(in_train, targets, missing).astype(np.int64 if task.is_classification else np.float32)
    prepare = method.prepare_sample if type(method).prepare_sample is not Method.prepare_sample else None
    return ClipDataset(cache, table, spec, mean, std, seed, labels=labels, prepare=prepare)


def normalisation(dataset: VideoDataset, cache: DecodeCache) -> tuple[float, float]:
    """Mean/std of the training split, the same for every method and protocol."""
    return cache.stats(list(dataset.split_table("train")["video_id"]))


@dataclass
class Located:
    """A freshly built method, its pretraining config sized to the pretraining set (``pretrain.steps`` derived from
    ``pretrain.epochs``), that run's length, and where its checkpoint lives; ``ready`` when no training is needed."""

    method: Method
    checkpoint_hash: str
    folder: Path
    meta: ckpt.CheckpointMeta | None
    pretrain: PretrainConfig
    length: RunLength | None

    @property
    def ready(self) -> bool:
        return not self.method.trainable or (self.meta is not None and self.meta.complete)


def locate(
    method_cls: type[Method],
    method_config: Any,
    pretrain: PretrainConfig,
    dataset: VideoDataset,
    splits: tuple[str, ...],
    pretrain_filter: str | None = None,
) -> Located:
    method = build_method(method_cls, method_config, pretrain.seed)
    length = None
    if method.trainable:
        length = run_length(pretrain, len(pretraining_table(dataset, splits, pretrain_filter)))
        pretrain = sized(pretrain, length.num_videos)
    key = checkpoint_hash(method, pretrain, dataset, splits, pretrain_filter)
    folder = checkpoints_dir() / method.name / key
    return Located(method, key, folder, ckpt.read_meta(folder), pretrain, length)


def obtain(
    located: Located,
    dataset: VideoDataset,
    cache: DecodeCache,
    splits: tuple[str, ...],
    sink: Any = None,
    stop_after: int | None = None,
    pretrain_filter: str | None = None,
) -> Pretrained:
    """Return the pretrained method, training (or resuming) only when no finished checkpoint matches."""
    method, key, folder, meta = located.method, located.checkpoint_hash, located.folder, located.meta
    pretrain = located.pretrain
    if meta is not None and meta.complete:
        ckpt.load_model(folder, method, method=method.name)
        return Pretrained(method, key, folder, meta)

    table = pretraining_table(dataset, splits, pretrain_filter)
    pretrained_ids = sorted(table["video_id"])
    init = None
    if pretrain.init_from is not None:
        init = load_init_weights(method, pretrain.init_from, f"method {method.name!r}", method.map_init_weights)
    extra = {
        "checkpoint_hash": key,
        "pretrain_config": pretrain_record(pretrain),
        "dataset": dataset.name,
        "dataset_hash": dataset.content_hash(),
        "pretrain_splits": list(splits),
        "pretrained_videos_hash": stable_hash(pretrained_ids),
        "pretrained_video_ids": pretrained_ids,
        "num_pretrained_videos": len(pretrained_ids),
        "pretrain_filter": pretrain_filter,
        "init_from": init,
        "length": None if located.length is None else located.length.record(),
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

    world = distributed.current()
    if not method.trainable:
        if world.is_main:
            ckpt.save_model(folder, method, make_meta(0, True))
        distributed.barrier()
        return Pretrained(method, key, folder, make_meta(0, True))

    clips = pretrain_data(method, dataset, cache, table, pretrain.seed)

    def batches(start_step: int) -> Iterator[ClipBatch]:
        size, seed, workers = pretrain.batch_size, pretrain.seed, pretrain.num_workers
        return step_batches(clips, size, seed, start_step, workers, world.rank, world.size)

    loop = method_loop(
        method,
        pretrain,
        folder,
        make_meta,
        steps_per_epoch=located.length.steps_per_epoch if located.length is not None else 1,
        description=f"pretrain {method.name}",
        sink=sink,
        stop_after=stop_after,
    )
    if meta is not None and world.is_main:
        console.print(f"resuming {method.name} pretraining from step {meta.step}/{pretrain.steps} ({folder})")
    loop.run(batches)
    method.eval()
    final = ckpt.read_meta(folder)
    assert final is not None
    return Pretrained(method, key, folder, final)
