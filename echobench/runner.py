"""``echobench run``: resolve everything, pretrain or reuse, evaluate, track, and write the result.

Every user mistake (unknown names, bad overrides, a task the dataset cannot label) is caught while resolving, before
any data is decoded or any model trained.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from echobench import distributed, registry
from echobench.api import ClipSpec, Method
from echobench.atomic import atomic_path
from echobench.checkpoint import read_meta
from echobench.config import (
    DataConfig,
    PretrainConfig,
    apply_overrides,
    apply_pretrain_overrides,
    parse_set,
    pretrain_record,
    to_dict,
)
from echobench.console import console
from echobench.context import CONTROLLED_SPLIT, ProtocolContext
from echobench.data.base import VideoDataset
from echobench.data.checks import RowChecks, check_rows, check_split_names
from echobench.data.decode_cache import DecodeCache
from echobench.data.tasks import Task, get_task
from echobench.errors import UserError
from echobench.init_weights import load_init_weights
from echobench.locks import exclusive
from echobench.pretrain import Located, Pretrained, build_method, locate, normalisation, obtain, parse_filter
from echobench.profiles import family_overrides, profile_overrides
from echobench.protocols import Family, check_task, get_family
from echobench.protocols.base import ProtocolResult
from echobench.protocols.repeat import repeat_over_seeds
from echobench.registry import ProtocolSpec
from echobench.results import (
    leakage,
    protocol_result,
    read_result,
    result_path,
    result_record,
    run_hash,
    write_result,
)
from echobench.tracking import start_run
from echobench.train import resolve_device

EVAL_CLIP_FIELDS = {"start", "num_clips", "start_frame"}


@dataclass
class Resolved:
    """A fully validated run: configs after profile and ``--set``, before any heavy work."""

    method_cls: type[Method]
    method_config: Any
    pretrain: PretrainConfig
    data: DataConfig
    protocol: ProtocolSpec
    family: Family
    protocol_config: Any
    eval_clips: dict[str, Any]
    task: Task
    profile: str
    seeds: int = 1
    overrides: list[str] = field(default_factory=list)
    skip_bad: bool = False
    allow_patient_overlap: bool = False
    row_checks: RowChecks | None = None


@dataclass(frozen=True)
class Layer:
    """One source of config values, in the order they are applied: ``name`` says who set them (``--dry-run``
    prints it beside each value)."""

    name: str
    method: dict[str, Any]
    pretrain: dict[str, Any]
    #: How an error names the method and pretraining parts of this layer.
    where: tuple[str, str]


def config_layers(method_cls: type[Method], profile: str, overrides: dict[str, dict[str, Any]]) -> list[Layer]:
    """The layers of a run's method and pretraining config, first applied first: the plugin's defaults, the
    harness profile, the plugin's own settings for that profile, then ``--config``/``--set``."""
    preset = profile_overrides(profile)
    own = method_cls.profile_overrides.get(profile, {})
    name = method_cls.name
    return [
        Layer(f"{name} defaults", {}, dict(method_cls.pretrain_defaults), ("", f"{name} pretrain_defaults")),
        Layer(
            f"profile {profile}",
            dict(preset.get("method", {})),
            dict(preset.get("pretrain", {})),
            (f"profile {profile} method", f"profile {profile} pretrain"),
        ),
        Layer(
            f"{name} profile {profile}",
            dict(own.get("method", {})),
            dict(own.get("pretrain", {})),
            (f"{name} profile {profile} method", f"{name} profile {profile} pretrain"),
        ),
        Layer(
            "--set",
            dict(overrides.get("method", {})),
            dict(overrides.get("pretrain", {})),
            (f"method {name}", "pretrain"),
        ),
    ]


def resolve_pretraining(
    method: str, sets: list[str] | None, profile: str, dataset: str | None = None, data_root: str | None = None
) -> tuple[type[Method], Any, PretrainConfig, DataConfig, dict[str, dict[str, Any]]]:
    overrides = parse_set(sets)
    method_cls = registry.load_method(method)
    method_config, pretrain = method_cls.Config(), PretrainConfig()
    for layer in config_layers(method_cls, profile, overrides):
        method_config = apply_overrides(method_config, layer.method, where=layer.where[0])
        pretrain = apply_pretrain_overrides(pretrain, layer.pretrain, where=layer.where[1])
    data = DataConfig(dataset=dataset or "synthecho", root=data_root)
    data = apply_overrides(data, overrides.get("data", {}), where="data")
    check_split_names(data.pretrain_splits)
    if data.pretrain_filter is not None:
        parse_filter(data.pretrain_filter)
    # A method config the plugin rejects, or a missing, pickled or ill-fitting weight file, must fail before any
    # data is generated or decoded.
    probe = build_method(method_cls, method_config, pretrain.seed)
    if pretrain.init_from is not None:
        load_init_weights(probe, pretrain.init_from, f"method {method_cls.name!r}", probe.map_init_weights)
    return method_cls, method_config, pretrain, data, overrides


def resolve(
    method: str,
    protocol: str,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    task: str | None = None,
    sets: list[str] | None = None,
    profile: str = "quick",
    seeds: int | None = None,
    skip_bad: bool = False,
    allow_patient_overlap: bool = False,
) -> Resolved:
    method_cls, method_config, pretrain, data, overrides = resolve_pretraining(
        method, sets, profile, dataset, data_root
    )
    spec = registry.load_protocol(protocol)
    family = get_family(spec.family)
    protocol_overrides = dict(overrides.get("protocol", {}))
    repeats = _seeds(protocol_overrides.pop("seeds", spec.settings.get("seeds", 1)) if seeds is None else seeds)
    clip_overrides = {k.split(".", 1)[1]: v for k, v in protocol_overrides.items() if k.startswith("eval_clips.")}
    if "clips" in protocol_overrides:
        clip_overrides |= clips_setting(protocol_overrides.pop("clips"))
    unknown_clip = set(clip_overrides) - EVAL_CLIP_FIELDS
    if unknown_clip:
        raise UserError(
            f"protocol.eval_clips has no field {sorted(unknown_clip)[0]!r}; fields: {sorted(EVAL_CLIP_FIELDS)}"
        )
    # The method's own demands (Temporal MAE's oracle clips) win over the protocol's and the user's clip settings.
    imposed = method_cls.eval_clip_settings(method_config)
    eval_clips = {**spec.settings.get("eval_clips", {}), **clip_overrides, **imposed}
    config_values = {**spec.settings.get("config", {}), **family_overrides(profile, spec.family)}
    config_values.update(
        {k: v for k, v in protocol_overrides.items() if not k.startswith("eval_clips.") and k not in CONTROL_SETTINGS}
    )
    # A step count given on the command line means steps, over a profile's epochs.
    for steps_name, epochs_name in STEP_TWINS.items():
        if steps_name in protocol_overrides and epochs_name not in protocol_overrides and epochs_name in config_values:
            config_values[epochs_name] = None
    protocol_config = family.config_from_dict(config_values)
    control = frame_control(protocol_overrides)
    if control != "none":
        if not _frozen_encoder(family, protocol_config):
            setting = next(name for name, value in CONTROL_SETTINGS.items() if value == control)
            raise UserError(
                f"protocol.{setting}: protocol {spec.name} trains the encoder, so it would learn from the "
                "altered clips; use the control with a frozen protocol (knn, linear, mlp, attentive, ...)"
            )
        eval_clips["frame_control"] = control
    chosen_task = get_task(task or data.task or spec.task)
    check_task(spec.name, family, protocol_config, chosen_task)
    resolved = Resolved(
        method_cls=method_cls,
        method_config=method_config,
        pretrain=pretrain,
        data=data,
        protocol=spec,
        family=family,
        protocol_config=protocol_config,
        eval_clips=eval_clips,
        task=chosen_task,
        profile=profile,
        seeds=repeats,
        overrides=list(sets or []),
        skip_bad=skip_bad,
        allow_patient_overlap=allow_patient_overlap,
    )
    resolved_eval_spec(resolved)
    return resolved


#: Protocol settings in steps and their twins in epochs (the paper profile's fine-tuning length).
STEP_TWINS = {"steps": "epochs", "eval_every": "eval_every_epochs"}


def clips_setting(value: Any) -> dict[str, Any]:
    """``protocol.clips``: ``all`` (every start, tiling the video) or N evenly spaced clips per test video."""
    if value == "all":
        return {"start": "all"}
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return {"start": "evenly", "num_clips": value}
    raise UserError(f"protocol.clips must be a positive integer or 'all', got {value!r}; e.g. --set protocol.clips=4")


#: Temporal controls of the frozen protocols: ``--set protocol.shuffle_frames=true`` permutes each test clip's
#: frames, ``--set protocol.freeze_frames=true`` repeats its first frame (the readout is fitted on intact clips).
CONTROL_SETTINGS = {"shuffle_frames": "shuffle", "freeze_frames": "freeze"}


def frame_control(protocol_overrides: dict[str, Any]) -> str:
    """The evaluation clips' :attr:`ClipSpec.frame_control` from the ``protocol.*`` control settings."""
    chosen = []
    for setting in CONTROL_SETTINGS:
        value = protocol_overrides.get(setting, False)
        if not isinstance(value, bool):
            raise UserError(
                f"protocol.{setting} must be true or false, got {value!r}; e.g. --set protocol.{setting}=true"
            )
        if value:
            chosen.append(setting)
    if len(chosen) > 1:
        raise UserError("protocol.shuffle_frames and protocol.freeze_frames exclude each other; set one of them")
    return CONTROL_SETTINGS[chosen[0]] if chosen else "none"


def _seeds(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise UserError(f"seeds must be a positive integer, got {value!r}; e.g. --seeds 3")


def resolved_eval_spec(resolved: Resolved) -> ClipSpec:
    cfg = resolved.method_config
    try:
        return ClipSpec(frames=cfg.frames, stride=cfg.stride, size=cfg.size, seconds=cfg.seconds, **resolved.eval_clips)
    except (TypeError, ValueError) as exc:
        raise UserError(f"protocol {resolved.protocol.name}: bad eval_clips {resolved.eval_clips}: {exc}") from None


def open_dataset(data: DataConfig) -> VideoDataset:
    """The named dataset at ``data.root``; SynthEcho is generated into the cache when no root is given."""
    cls = registry.load_dataset(data.dataset)
    if data.root is not None:
        root = Path(data.root).expanduser()
        if not root.is_dir():
            raise UserError(f"--data-root {root} is not a folder; point it at the {data.dataset} dataset's root")
        return cls(root)
    default = getattr(cls, "default", None)
    if default is None:
        raise UserError(f"dataset {data.dataset!r} has no built-in copy; pass --data-root PATH to its folder")
    return default()


def check_clip_fits(dataset: VideoDataset, spec: ClipSpec) -> None:
    if spec.start == "ed_es":
        unknown = dataset.table[(dataset.table["ed_frame"] < 0) | (dataset.table["es_frame"] < 0)]
        if len(unknown):
            raise UserError(
                f"dataset {dataset.name} has no ED/ES frames for {len(unknown)} of {len(dataset.table)} videos "
                f"(e.g. {unknown['video_id'].iloc[0]!r}), but clips sampled between end-diastole and end-systole "
                "(oracle) need them; use a dataset with LV tracings or a non-oracle method config"
            )
        return
    if spec.start == "uniform":
        return
    if spec.seconds is not None:
        bad = dataset.table[~(dataset.table["fps"] > 0)]
        if len(bad):
            raise UserError(
                f"clips sampled over {spec.seconds} s need each video's fps, but {bad['video_id'].iloc[0]!r} has "
                f"fps {bad['fps'].iloc[0]}; fix the dataset's FPS column or unset method.seconds"
            )
        return
    longest = int(dataset.table["num_frames"].max())
    if spec.span > longest:
        raise UserError(
            f"a clip of {spec.frames} frames at stride {spec.stride} spans {spec.span} frames, longer than every "
            f"video of {dataset.name} (longest {longest}); lower method.frames or method.stride"
        )


def pretrain_tracked(
    method_cls: type[Method],
    method_config: Any,
    pretrain: PretrainConfig,
    data: DataConfig,
    dataset: VideoDataset,
    cache: DecodeCache,
    profile: str,
) -> Pretrained:
    """Pretrain (or resume) inside an MLflow run; a reused finished checkpoint opens no run."""
    splits = tuple(data.pretrain_splits)
    located = locate(method_cls, method_config, pretrain, dataset, splits, data.pretrain_filter)
    if located.meta is not None and located.meta.complete:
        return obtain(located, dataset, cache, splits, pretrain_filter=data.pretrain_filter)
    if not distributed.current().is_main:
        # Rank 0 holds the checkpoint lock for the whole process group; the other ranks train alongside it.
        return _pretrain_tracked(located, method_cls, method_config, pretrain, data, dataset, cache, profile)
    with exclusive(located.folder, f"pretraining {method_cls.name} (checkpoint {located.checkpoint_hash})"):
        # The winner of a race has finished the checkpoint this process waited for.
        located = dataclasses.replace(located, meta=read_meta(located.folder))
        return _pretrain_tracked(located, method_cls, method_config, pretrain, data, dataset, cache, profile)


def _pretrain_tracked(
    located: Located,
    method_cls: type[Method],
    method_config: Any,
    pretrain: PretrainConfig,
    data: DataConfig,
    dataset: VideoDataset,
    cache: DecodeCache,
    profile: str,
) -> Pretrained:
    splits = tuple(data.pretrain_splits)
    if located.ready or not distributed.current().is_main:
        return obtain(located, dataset, cache, splits, pretrain_filter=data.pretrain_filter)
    params = {
        "method": to_dict(method_config),
        "pretrain": pretrain_record(located.pretrain),
        "length": None if located.length is None else located.length.record(),
        "data": to_dict(data),
        "profile": profile,
    }
    tags = {"echobench.kind": "pretrain", "echobench.method": method_cls.name, "echobench.dataset": dataset.name}
    with start_run("echobench-pretrain", f"{method_cls.name}-{dataset.name}", params, tags) as run:
        pretrained = obtain(located, dataset, cache, splits, sink=run, pretrain_filter=data.pretrain_filter)
        run.set_tags(
            {"echobench.checkpoint_hash": pretrained.checkpoint_hash, "echobench.checkpoint": str(pretrained.folder)}
        )
    return pretrained


@dataclass
class Outcome:
    """An evaluation's result file (``record``); ``reused`` when an identical earlier run's file was returned."""

    resolved: Resolved
    result: ProtocolResult
    record: dict[str, Any]
    result_path: Path
    reused: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def checkpoint_hash(self) -> str:
        return self.record["checkpoint_hash"]

    def summary(self) -> dict[str, Any]:
        keys = (
            "method", "protocol", "dataset", "task", "profile", "metrics", "ci95", "ci_unit", "ci_units",
            "val_metrics", "chosen", "per_seed", "seeds", "summary", "runs", "checkpoint_hash", "run_hash",
            "mlflow_run_id", "seconds",
            "evaluated_on_pretraining_videos", "pretraining_overlap",
        )  # fmt: skip
        extra = {"result_path": str(self.result_path), "reused": self.reused, "notes": self.notes}
        return {k: self.record.get(k) for k in keys} | extra


def prepare(resolved: Resolved, dataset: VideoDataset | None = None) -> ProtocolContext:
    """Everything a protocol needs: checks against the dataset (before any work), the decode cache, the checkpoint
    (pretrained or reused) and the normalisation."""
    dataset = dataset or open_dataset(resolved.data)
    resolved.task.targets(dataset.table, dataset.name)
    eval_spec = resolved_eval_spec(resolved)
    check_clip_fits(dataset, eval_spec)
    if resolved.family.check is not None:
        resolved.family.check(resolved.protocol_config, dataset, resolved.task)
    resolved.row_checks = check_rows(
        dataset, resolved.task, skip_bad=resolved.skip_bad, allow_patient_overlap=resolved.allow_patient_overlap
    )
    cache = DecodeCache.build(dataset, resolved.method_config.size)
    resolved.row_checks.check_videos(dataset.table, cache)
    pretrained = pretrain_tracked(
        resolved.method_cls, resolved.method_config, resolved.pretrain, resolved.data, dataset, cache, resolved.profile
    )
    context = ProtocolContext(
        pretrained=pretrained,
        dataset=dataset,
        cache=cache,
        task=resolved.task,
        config=resolved.protocol_config,
        eval_spec=eval_spec,
        norm=normalisation(dataset, cache),
        seed=resolved.pretrain.seed,
    )
    return resolved.row_checks.restrict(context)


def execute(resolved: Resolved, *, force: bool = False) -> Outcome:
    """Evaluate ``resolved``: reuse the result file of an identical earlier run unless ``force``, otherwise
    prepare (pretrain or reuse the checkpoint), run the protocol inside an MLflow run and write the result."""
    started = time.perf_counter()
    dataset = open_dataset(resolved.data)
    splits = tuple(resolved.data.pretrain_splits)
    located = locate(
        resolved.method_cls, resolved.method_config, resolved.pretrain, dataset, splits, resolved.data.pretrain_filter
    )
    checkpoint = located.checkpoint_hash
    identity = evaluation_identity(resolved, dataset, checkpoint)
    run = run_hash(identity)
    path = result_path(resolved.method_cls.name, checkpoint, dataset.name, resolved.protocol.name,
                       resolved.task.name, run)  # fmt: skip
    if path.is_file() and not force:
        record = read_result(path)
        console.print(f"reusing the result of an identical earlier run ({record.get('created')}); --force re-runs it")
        return Outcome(resolved, protocol_result(record), record, path, reused=True)
    context = prepare(resolved, dataset)
    row_checks = resolved.row_checks or RowChecks()
    with start_run("echobench-eval", _run_name(resolved), _tracked_params(resolved, identity), _tags(resolved)) as mlf:
        result = run_family(resolved, context)
        mlf.log_metrics(_tracked_metrics(result))
        predictions = path.with_suffix(".predictions.csv")
        with atomic_path(predictions) as tmp:
            result.predictions.to_csv(tmp, index=False)
        mlf.log_artifact(predictions)
        provenance = {
            "run_hash": run,
            "profile": resolved.profile,
            "overrides": resolved.overrides,
            "pretrain_config": pretrain_record(located.pretrain),
            "pretrain_length": None if located.length is None else located.length.record(),
            "pretrained_steps": context.pretrained.meta.step,
            "pretrain_splits": sorted(context.pretrained.meta.extra.get("pretrain_splits", [])),
            **leakage(context.evaluated, pretrained_video_ids(context.pretrained, dataset)),
            "frozen_encoder": _frozen_encoder(resolved.family, resolved.protocol_config),
            "mlflow_run_id": mlf.run_id,
            "predictions_csv": str(predictions),
            "seconds": round(time.perf_counter() - started, 2),
            "data_checks": row_checks.record(),
            "trained_on_task": _trained_on_task(context.pretrained.method, resolved.task),
        }
        record = result_record(identity, result, provenance, resolved.task.primary_metric)
        write_result(path, record)
        mlf.log_artifact(path)
    return Outcome(resolved, result, read_result(path), path, notes=row_checks.notes())


def evaluation_identity(resolved: Resolved, dataset: VideoDataset, checkpoint: str) -> dict[str, Any]:
    """Everything an evaluation's number depends on; its hash names the result file."""
    identity = {
        "method": resolved.method_cls.name,
        "plugin_version": resolved.method_cls.version,
        "method_config": to_dict(resolved.method_config),
        "checkpoint_hash": checkpoint,
        "dataset": dataset.name,
        "dataset_hash": dataset.content_hash(),
        "split_hashes": {s: dataset.split_hash(s) for s in ("train", "val", "test")},
        "protocol": resolved.protocol.name,
        "protocol_version": resolved.protocol.version,
        "protocol_config": _config_dict(resolved),
        "eval_clips": resolved.eval_clips,
        "seeds": resolved.seeds,
        "task": resolved.task.name,
        "task_version": resolved.task.version,
    }
    if resolved.eval_clips.get("frame_control", "none") != "none":
        identity["controlled_split"] = CONTROLLED_SPLIT
    return identity


def pretrained_video_ids(pretrained: Pretrained, dataset: VideoDataset) -> set[str]:
    """Video ids the encoder was pretrained on: the list its checkpoint records, or (older checkpoints) the videos
    of its pretraining splits; none for an encoder that never trained."""
    if pretrained.meta.total_steps == 0:
        return set()
    extra = pretrained.meta.extra
    if "pretrained_video_ids" in extra:
        return {str(v) for v in extra["pretrained_video_ids"]}
    splits = extra.get("pretrain_splits", [])
    return {str(v) for v in dataset.table[dataset.table["split"].isin(splits)]["video_id"]}


def _run_name(resolved: Resolved) -> str:
    return f"{resolved.method_cls.name}-{resolved.protocol.name}-{resolved.task.name}"


def _tracked_params(resolved: Resolved, identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": identity["method_config"],
        "pretrain": pretrain_record(resolved.pretrain),
        "protocol": {
            "name": resolved.protocol.name,
            "version": resolved.protocol.version,
            "seeds": resolved.seeds,
            **identity["protocol_config"],
        },
        "task": resolved.task.name,
        "dataset": identity["dataset"],
        "profile": resolved.profile,
        "checkpoint_hash": identity["checkpoint_hash"],
    }


def _tags(resolved: Resolved) -> dict[str, str]:
    return {
        "echobench.kind": "evaluation",
        "echobench.method": resolved.method_cls.name,
        "echobench.protocol": resolved.protocol.name,
        "echobench.task": resolved.task.name,
        "echobench.dataset": resolved.data.dataset,
    }


def run_family(resolved: Resolved, context: ProtocolContext) -> ProtocolResult:
    """The protocol, repeated over ``resolved.seeds`` seeds when its result depends on one."""
    family, config = resolved.family, resolved.protocol_config
    # A protocol config may say that this setting of it does not depend on the seed (a closed-form probe).
    if resolved.seeds == 1 or not family.trains or not getattr(config, "depends_on_seed", True):
        if resolved.seeds > 1:
            console.print(f"note: protocol {resolved.protocol.name} is deterministic; --seeds has no effect")
        return family.run(context)
    first = config.seed
    return repeat_over_seeds(
        lambda seed: family.run(context.with_config(dataclasses.replace(config, seed=seed), seed=seed)),
        [first + i for i in range(resolved.seeds)],
        resamples=_ci_resamples(config),
    )


def _ci_resamples(config: Any) -> int:
    """The protocol's bootstrap resamples (a wrapper's are its inner protocol's)."""
    if hasattr(config, "ci_resamples"):
        return int(config.ci_resamples)
    resolve = getattr(config, "resolve", None)
    return _ci_resamples(resolve()[1]) if resolve is not None else 0


def _frozen_encoder(family: Family, config: Any) -> bool:
    """Whether the protocol (a wrapper's inner protocol) evaluates the encoder without changing it."""
    if family.task_kinds is None:
        return _frozen_encoder(*config.resolve())
    # Fine-tuning with nothing unfrozen trains only a head, on random clips.
    return family.frozen or getattr(config, "unfreeze", None) == 0


def _trained_on_task(method: Method, task: Task) -> bool:
    """Whether pretraining used labels of the column the evaluated task reads (the supervised ceiling on its own
    task, or on a task derived from the same column)."""
    return any(get_task(name).column == task.column for name in method.clip_spec().tasks)


def _summary_records(result: ProtocolResult) -> list[dict[str, Any]] | None:
    return None if result.summary is None else result.summary.to_dict(orient="records")


def _config_dict(resolved: Resolved) -> dict[str, Any]:
    cfg = resolved.protocol_config
    return to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def _tracked_metrics(result: ProtocolResult) -> dict[str, float]:
    metrics = {f"test_{k}": v for k, v in result.metrics.items()}
    metrics.update({f"val_{k}": v for k, v in result.val_metrics.items()})
    for name, (low, high) in result.ci.items():
        metrics[f"test_{name}_ci_low"] = low
        metrics[f"test_{name}_ci_high"] = high
    metrics.update({k: float(v) for k, v in result.chosen.items() if isinstance(v, int | float)})
    return {k: v for k, v in metrics.items() if pd.notna(v)}


def pretrain_only(
    method: str, sets: list[str] | None, profile: str, dataset: str | None, data_root: str | None
) -> Pretrained:
    """``echobench pretrain``: the pretraining half of ``run``, with the same checkpoint reuse."""
    method_cls, method_config, pretrain, data, overrides = resolve_pretraining(
        method, sets, profile, dataset, data_root
    )
    if overrides.get("protocol"):
        raise UserError("echobench pretrain takes no protocol.* overrides; use them with echobench run")
    distributed.check_batch(pretrain.batch_size, distributed.launched())
    distributed.init(resolve_device(pretrain.device))
    settings = method_cls.eval_clip_settings(method_config)
    with distributed.main_first():
        ds = open_dataset(data)
        check_clip_fits(
            ds, ClipSpec(frames=method_config.frames, stride=method_config.stride, size=method_config.size, **settings)
        )
        cache = DecodeCache.build(ds, method_config.size)
    return pretrain_tracked(method_cls, method_config, pretrain, data, ds, cache, profile)
