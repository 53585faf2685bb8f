"""Dataclass configs: typed overrides from ``--set a.b=c``, YAML loading, and stable hashing."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from echobench.errors import UserError

T = TypeVar("T")

SECTIONS = ("method", "pretrain", "protocol", "data")


class _ScalarLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: ``1e-3`` is a number, where YAML 1.1 makes it a string.
    Used for ``--set`` values and config files alike, so a value reads the same in both."""


_ScalarLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ScalarLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def read_scalar(raw: str) -> Any:
    """A ``--set`` value: a YAML scalar or list (``0.75``, ``1e-3``, ``true``, ``[1, 2]``); empty text is ``""``."""
    return yaml.load(raw, Loader=_ScalarLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field (of each element, for tuples); ``None`` bounds are open."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        return self.high is None or not (value > self.high or (value == self.high and not self.high_inclusive))

    def describe(self) -> str:
        if self.high is None:
            return f"{'>=' if self.low_inclusive else '>'} {self.low:g}"
        if self.low is None:
            return f"{'<=' if self.high_inclusive else '<'} {self.high:g}"
        opening, closing = "[" if self.low_inclusive else "(", "]" if self.high_inclusive else ")"
        return f"in {opening}{self.low:g}, {self.high:g}{closing}"


def ranged(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field whose values (checked by :func:`apply_overrides`) must lie in the given bounds.

    ``steps: int = ranged(2000, ge=1)``; ``mask_ratio: float = ranged(0.9, gt=0, lt=1)``.
    """
    if (ge is not None and gt is not None) or (le is not None and lt is not None):
        raise ValueError("give at most one lower bound (ge or gt) and one upper bound (le or lt)")
    bounds = Range(
        low=ge if gt is None else gt,
        high=le if lt is None else lt,
        low_inclusive=gt is None,
        high_inclusive=lt is None,
    )
    return field(default=default, metadata={"range": bounds})


def check_range(value: Any, bounds: Range, where: str) -> None:
    """Raise a one-line UserError unless ``value`` (every element of a tuple/list) lies in ``bounds``."""
    values = value if isinstance(value, list | tuple) else [value]
    for item in values:
        if isinstance(item, int | float) and not isinstance(item, bool) and not bounds.contains(float(item)):
            raise UserError(f"{where} must be {bounds.describe()}, got {value!r}")


def check_ranges(config: Any, *, where: str) -> None:
    """Check every field of dataclass ``config`` that declares a range (see :func:`ranged`)."""
    for item in dataclasses.fields(config):
        bounds = item.metadata.get("range")
        if bounds is not None:
            check_range(getattr(config, item.name), bounds, f"{where}.{item.name}")


@dataclass
class PretrainConfig:
    """The harness's pretraining loop; a method's ``pretrain_defaults`` and ``--set pretrain.x=`` override it.

    Length: ``epochs`` (passes over the pretraining set, as every paper gives it) or, when ``epochs`` is unset,
    ``steps``. A run in epochs trains ``round(epochs × steps_per_epoch)`` optimiser steps, where ``steps_per_epoch``
    is the number of full global batches in the videos actually pretrained on (after ``data.pretrain_filter``);
    :mod:`echobench.run_length` derives it before the checkpoint is hashed. Warm-up: ``warmup_epochs`` when set,
    else ``warmup_fraction`` of the steps. A layer of settings (profile, ``--config``, ``--set``) that gives
    ``steps`` without ``epochs`` switches the run to steps (see :func:`apply_pretrain_overrides`).

    ``weight_decay_end`` (optional) makes weight decay follow a cosine from ``weight_decay`` to it over the run
    (V-JEPA: 0.04 → 0.4). ``init_from`` is a local weight file (safetensors, or a torch state dict read with
    ``weights_only=True``) that pretraining starts from; its content hash, not its path, enters the checkpoint hash.
    """

    steps: int = ranged(2000, ge=1)
    epochs: float | None = ranged(None, gt=0)
    batch_size: int = ranged(8, ge=1)
    lr: float = ranged(1.5e-4, gt=0)
    lr_scaling: Literal["linear", "none"] = "linear"
    min_lr_ratio: float = ranged(0.01, ge=0, le=1)
    warmup_fraction: float = ranged(0.1, ge=0, lt=1)
    warmup_epochs: float | None = ranged(None, ge=0)
    weight_decay: float = ranged(0.05, ge=0)
    weight_decay_end: float | None = ranged(None, ge=0)
    betas: tuple[float, float] = ranged((0.9, 0.95), ge=0, lt=1)
    #: 0 turns clipping off.
    grad_clip: float = ranged(1.0, ge=0)
    amp: Literal["auto", "bf16", "off"] = "auto"
    checkpoint_every: int = ranged(200, ge=1)
    log_every: int = ranged(1, ge=1)
    seed: int = ranged(0, ge=0)
    num_workers: int = ranged(0, ge=0)
    device: str = "auto"
    init_from: str | None = None

    @property
    def effective_lr(self) -> float:
        """``lr`` is specified at batch 256 when ``lr_scaling`` is linear (MAE convention)."""
        return self.lr * self.batch_size / 256 if self.lr_scaling == "linear" else self.lr


@dataclass
class DataConfig:
    """``pretrain_filter`` = ``"TASK=VALUE"`` keeps only pretraining videos whose task label equals the value
    (DISCOVER pretrains on normal videos only: ``ef_anomaly=0``); recorded in the checkpoint metadata."""

    dataset: str = "synthecho"
    root: str | None = None
    task: str | None = None
    pretrain_splits: tuple[str, ...] = ("train",)
    pretrain_filter: str | None = None


@dataclass
class RunSpec:
    """Everything a run depends on, after profile and ``--set`` overrides."""

    method: Any
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    protocol: dict[str, Any] = field(default_factory=dict)


#: Fields that say how long a run is in epochs; a settings layer that names ``steps`` switches the run to steps
#: (a quick profile, or ``--set pretrain.steps=50`` on top of a paper profile in epochs).
EPOCH_FIELDS = ("epochs", "warmup_epochs")


def apply_pretrain_overrides(config: PretrainConfig, overrides: dict[str, Any], *, where: str) -> PretrainConfig:
    """:func:`apply_overrides` for :class:`PretrainConfig`, with the length rule: a layer giving ``steps`` means a
    run in steps and clears ``epochs`` and, unless it gives one, ``warmup_epochs``; a layer giving both ``steps``
    and ``epochs`` is ambiguous and refused."""
    if "steps" in overrides and overrides.get("epochs") is not None:
        raise UserError(
            f"{where}: set either steps or epochs, not both (got steps={overrides['steps']!r}, "
            f"epochs={overrides['epochs']!r})"
        )
    if "steps" in overrides:
        overrides = {**dict.fromkeys(EPOCH_FIELDS), **overrides}
    return apply_overrides(config, overrides, where=where)


def pretrain_record(config: PretrainConfig) -> dict[str, Any]:
    """``config`` as recorded in checkpoints, hashes and results: unset epoch fields are left out, so a run in
    steps records (and hashes) exactly what it did before training length could be given in epochs."""
    return {k: v for k, v in to_dict(config).items() if not (k in EPOCH_FIELDS and v is None)}


def parse_set(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """Parse ``section.key=value`` strings; values are read by :func:`read_scalar`."""
    parsed: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        section, dot, name = key.partition(".")
        if not sep or not dot or not name or not section:
            raise UserError(f"malformed --set {item!r}: expected SECTION.KEY=VALUE, e.g. method.mask_ratio=0.75")
        if section not in SECTIONS:
            hint = did_you_mean(section, SECTIONS)
            raise UserError(f"unknown --set section {section!r} in {item!r}; use one of {', '.join(SECTIONS)}{hint}")
        try:
            value = read_scalar(raw)
        except yaml.YAMLError as exc:
            raise UserError(f"malformed value in --set {item!r}: {exc.problem}") from None
        parsed.setdefault(section, {})[name] = value
    return parsed


def apply_overrides(config: T, overrides: dict[str, Any], *, where: str) -> T:
    """Return a copy of dataclass ``config`` with ``overrides`` applied, each value coerced to the field's type and
    checked against the field's declared range (:func:`ranged`)."""
    if not overrides:
        return config
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in fields:
            hint = did_you_mean(name, fields)
            raise UserError(f"{where} has no field {name!r}{hint}; fields: {', '.join(fields)}")
        changes[name] = coerce(value, hints[name], f"{where}.{name}")
        bounds = fields[name].metadata.get("range")
        if bounds is not None:
            check_range(changes[name], bounds, f"{where}.{name}")
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Coerce a YAML value to a dataclass field annotation, or raise a one-line UserError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise UserError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0])
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise UserError(f"{where} needs {len(args)} values, got {value!r}")
        return tuple(coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{where} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{where} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{where} must be a string, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Hash of JSON-serialisable parts (dataclasses allowed) that is stable across runs and key order."""

    def normalise(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {"__type__": type(obj).__name__, **to_dict(obj)}
        return obj

    payload = json.dumps([normalise(p) for p in parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(Path(path).read_text(), Loader=_ScalarLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a YAML mapping at the top level")
    return data


def config_file_sets(path: Path) -> list[str]:
    """``--config FILE``: a YAML mapping of sections (method, pretrain, protocol, data) to ``{key: value}``, turned
    into ``--set`` strings (applied before the command line's own ``--set``)."""
    data = load_yaml(path)
    sets: list[str] = []
    for section, values in data.items():
        if section not in SECTIONS:
            hint = did_you_mean(str(section), SECTIONS)
            raise UserError(f"{path}: unknown section {section!r}{hint}; sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise UserError(f"{path}: section {section!r} must map keys to values, got {values!r}")
        sets.extend(f"{section}.{key}={json.dumps(value, default=str)}" for key, value in values.items())
    return sets


def did_you_mean(name: str, options: Any) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
