"""The plan before the bill: what a run or a pretraining would do, resolved exactly as it would be, read from the
dataset's label table only (no decoding, no training).

``echobench run … --dry-run`` and ``echobench pretrain … --dry-run`` print it; ``--json`` prints
:func:`plan_run`'s object. Each value says which layer set it (the plugin's defaults, the harness profile, the
plugin's settings for that profile, ``--set``, or derived) and, where the plugin names it in ``Method.sources``,
whether it is the paper's (with table or section), the authors' code's or echobench's choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from echobench.api import ClipSpec, Method
from echobench.config import EPOCH_FIELDS, DataConfig, PretrainConfig, parse_set, to_dict
from echobench.data.base import VideoDataset
from echobench.errors import UserError
from echobench.pretrain import locate, pretraining_table
from echobench.protocols.finetune import FinetuneConfig, in_steps
from echobench.run_length import run_length
from echobench.runner import (
    Resolved,
    check_clip_fits,
    config_layers,
    open_dataset,
    resolve,
    resolve_pretraining,
    resolved_eval_spec,
)

HARNESS = "echobench default"
DERIVED = "derived"

#: Pretraining values a plan lists (in this order), besides the derived length and lr.
PRETRAIN_KEYS = (
    "epochs",
    "steps",
    "warmup_epochs",
    "warmup_fraction",
    "batch_size",
    "lr",
    "lr_scaling",
    "min_lr_ratio",
    "weight_decay",
    "weight_decay_end",
    "betas",
    "grad_clip",
    "amp",
    "seed",
    "init_from",
)
GEOMETRY_KEYS = ("model", "frames", "stride", "seconds", "size", "patch", "tubelet")


def origins(method_cls: type[Method], profile: str, sets: list[str] | None) -> dict[str, str]:
    """``section.field`` → the name of the last layer that set it (fields no layer sets are absent)."""
    found: dict[str, str] = {}
    for layer in config_layers(method_cls, profile, parse_set(sets)):
        for key in layer.method:
            found[f"method.{key}"] = layer.name
        for key in layer.pretrain:
            found[f"pretrain.{key}"] = layer.name
        if "steps" in layer.pretrain:
            for name in EPOCH_FIELDS:
                found[f"pretrain.{name}"] = layer.name
    return found


#: What a value's source is when its plugin does not name one, by the layer that set it.
LAYER_SOURCES = {
    "profile quick": "quick profile: a CPU stand-in, no paper's value",
    "--set": "set by the user",
    HARNESS: "choice: echobench's default",
}


def _value_row(key: str, value: Any, set_by: dict[str, str], sources: dict[str, str], default_by: str) -> dict:
    layer = set_by.get(key, default_by)
    if layer in ("profile quick", "--set"):
        source = LAYER_SOURCES[layer]
    else:
        source = sources.get(key) or LAYER_SOURCES.get(layer, "plugin default")
    return {"key": key, "value": value, "set_by": layer, "source": source}


def _length_block(pretrain: PretrainConfig, num_videos: int, trainable: bool) -> dict[str, Any]:
    block: dict[str, Any] = {key: getattr(pretrain, key) for key in PRETRAIN_KEYS}
    block["lr_effective"] = pretrain.effective_lr
    block["trainable"] = trainable
    if not trainable:
        block.update(epochs=0, steps=0, steps_per_epoch=0, warmup_steps=0, num_videos=num_videos)
        return block
    length = run_length(pretrain, num_videos)
    block.update(length.record())
    block["min_lr"] = pretrain.effective_lr * pretrain.min_lr_ratio
    return block


def _pretraining_plan(
    method_cls: type[Method],
    method_config: Any,
    pretrain: PretrainConfig,
    data: DataConfig,
    dataset: VideoDataset,
    profile: str,
    sets: list[str] | None,
) -> dict[str, Any]:
    splits = tuple(data.pretrain_splits)
    table = pretraining_table(dataset, splits, data.pretrain_filter)
    located = locate(method_cls, method_config, pretrain, dataset, splits, data.pretrain_filter)
    trainable = located.method.trainable
    length = _length_block(located.pretrain, len(table), trainable)
    set_by = origins(method_cls, profile, sets)
    sources = dict(method_cls.sources)
    values = [
        _value_row(f"method.{key}", getattr(method_config, key), set_by, sources, f"{method_cls.name} defaults")
        for key in GEOMETRY_KEYS
    ]
    # A step count or warm-up fraction that a value in epochs replaces would only mislead.
    replaced = {"steps"} if pretrain.epochs is not None else set()
    replaced |= {"warmup_fraction"} if pretrain.warmup_epochs is not None else set()
    values += [
        _value_row(f"pretrain.{key}", getattr(pretrain, key), set_by, sources, HARNESS)
        for key in PRETRAIN_KEYS
        if key not in replaced
    ]
    if trainable and pretrain.epochs is not None:
        values.append(
            {"key": "pretrain.steps", "value": length["steps"], "set_by": DERIVED, "source": "epochs × steps per epoch"}
        )
    values.append(
        {
            "key": "pretrain.lr_effective",
            "value": length["lr_effective"],
            "set_by": DERIVED,
            "source": "lr × batch / 256" if pretrain.lr_scaling == "linear" else "lr (no batch rule)",
        }
    )
    return {
        "method": method_cls.name,
        "plugin_version": method_cls.version,
        "profile": profile,
        "dataset": dataset.name,
        "dataset_root": None if data.root is None else str(data.root),
        "model": {key: getattr(method_config, key) for key in GEOMETRY_KEYS},
        "method_config": to_dict(method_config),
        "pretrain": {
            **length,
            "splits": list(splits),
            "filter": data.pretrain_filter,
        },
        "checkpoint": {
            "hash": located.checkpoint_hash,
            "folder": str(located.folder),
            "complete": located.ready,
            "step": None if located.meta is None else located.meta.step,
        },
        "values": values,
        "problems": _batch_problem(len(table), located.pretrain.batch_size) if trainable else [],
    }


def _batch_problem(num_videos: int, batch_size: int) -> list[str]:
    if num_videos >= batch_size:
        return []
    return [
        f"the pretraining set has {num_videos} videos, fewer than one batch of {batch_size}; lower "
        "pretrain.batch_size or add videos"
    ]


def plan_pretraining(
    method: str,
    *,
    dataset: str | None,
    data_root: str | None,
    sets: list[str] | None,
    profile: str,
) -> dict[str, Any]:
    """The plan of ``echobench pretrain``: resolved settings, training length and checkpoint, nothing run."""
    method_cls, method_config, pretrain, data, overrides = resolve_pretraining(
        method, sets, profile, dataset, data_root
    )
    if overrides.get("protocol"):
        raise UserError("echobench pretrain takes no protocol.* overrides; use them with echobench run")
    opened = open_dataset(data)
    settings = method_cls.eval_clip_settings(method_config)
    spec = ClipSpec(frames=method_config.frames, stride=method_config.stride, size=method_config.size, **settings)
    plan = _pretraining_plan(method_cls, method_config, pretrain, data, opened, profile, sets)
    plan["problems"] = _problems(lambda: check_clip_fits(opened, spec)) + plan["problems"]
    return plan


def plan_run(
    method: str,
    protocol: str,
    *,
    dataset: str | None,
    data_root: str | None,
    task: str | None,
    sets: list[str] | None,
    profile: str,
) -> dict[str, Any]:
    """The plan of ``echobench run``: :func:`plan_pretraining` plus the protocol, its task and its length."""
    resolved = resolve(method, protocol, dataset=dataset, data_root=data_root, task=task, sets=sets, profile=profile)
    opened = open_dataset(resolved.data)
    problems = _problems(
        lambda: resolved.task.targets(opened.table, opened.name),
        lambda: check_clip_fits(opened, resolved_eval_spec(resolved)),
    )
    plan = _pretraining_plan(
        resolved.method_cls,
        resolved.method_config,
        resolved.pretrain,
        resolved.data,
        opened,
        profile,
        sets,
    )
    plan["protocol"] = _protocol_plan(resolved, opened)
    plan["task"] = resolved.task.name
    plan["problems"] = problems + plan["problems"]
    return plan


def _problems(*checks: Callable[[], object]) -> list[str]:
    """The messages of the checks that fail: a run would stop on the first of them, a plan lists them all (the
    paper geometry on SynthEcho's short clips, say) so that the rest of the plan can still be read."""
    found = []
    for check in checks:
        try:
            check()
        except UserError as exc:
            found.append(str(exc))
    return found


def _protocol_plan(resolved: Resolved, dataset: VideoDataset) -> dict[str, Any]:
    config = resolved.protocol_config
    settings = to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    block: dict[str, Any] = {
        "name": resolved.protocol.name,
        "version": resolved.protocol.version,
        "family": resolved.protocol.family,
        "config": settings,
        "eval_clips": dict(resolved.eval_clips),
        "seeds": resolved.seeds,
    }
    if isinstance(config, FinetuneConfig):
        train = dataset.split_table("train")
        _, valid = resolved.task.targets(train, dataset.name)
        sized, per_epoch = in_steps(config, int(valid.sum()))
        block["length"] = {
            "epochs": round(sized.steps / per_epoch, 6),
            "steps": sized.steps,
            "steps_per_epoch": per_epoch,
            "eval_every": sized.eval_every,
            "batch_size": sized.batch_size,
            "num_videos": int(valid.sum()),
            "unit": "epochs" if config.epochs is not None else "steps",
        }
    return block
