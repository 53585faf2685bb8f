"""From a spec's rows to echobench runs: which rows can run, with which settings, in which order.

Each published number (a :class:`~echobench.reproduce.spec.SpecRow`) becomes a :class:`PlannedRow`: either the
reason it cannot run, or the :class:`Run` (one ``echobench run``: plugin, protocol, dataset, task, ``--set``s)
that produces it. Rows with identical settings share one run (DISCOVER's Table 1 and Table 3 kNN numbers are one
evaluation); runs that pretrain the same checkpoint are ordered next to each other, so each checkpoint is trained
once and reused by every protocol that reads it, as ``echobench run`` reuses it.

Settings of a run, in the order applied (later wins): the method's ``geometry`` block (``paper`` profile only),
the table's ``sets``, the method's ``sets``, ``pretrain.init_from`` for ``--weights``, then the user's ``--set``.
A user ``--set section.key=value`` applies to the runs whose method config, pretraining config, data config or
protocol config has ``key``; ``NAME:section.key=value`` only to runs whose plugin or protocol is ``NAME``. A
user's step count replaces the spec's epochs (and the other way round), as on the ``run`` command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from echobench import registry
from echobench.config import DataConfig, PretrainConfig, did_you_mean, parse_set
from echobench.data.tasks import TASKS, get_task
from echobench.errors import UserError
from echobench.metrics import classification_metrics, regression_metrics, segmentation_metrics
from echobench.reproduce.spec import Spec, SpecRow, registered_datasets
from echobench.runner import EVAL_CLIP_FIELDS, Resolved, open_dataset, resolve

#: ``protocol.*`` settings that ``echobench run`` reads itself, beside the protocol config's fields.
RUNNER_PROTOCOL_KEYS = frozenset({"seeds", "clips", "shuffle_frames", "freeze_frames"})
#: A length setting and the settings it replaces (a step count given by the user replaces the spec's epochs).
LENGTH_TWINS: dict[str, tuple[str, ...]] = {
    "pretrain.steps": ("pretrain.epochs", "pretrain.warmup_epochs"),
    "pretrain.epochs": ("pretrain.steps",),
    "protocol.steps": ("protocol.epochs",),
    "protocol.epochs": ("protocol.steps",),
    "protocol.eval_every": ("protocol.eval_every_epochs",),
    "protocol.eval_every_epochs": ("protocol.eval_every",),
}


@dataclass(frozen=True)
class Options:
    """What the user asked for: data roots, a dataset replacing every row's, profile, ``--set``s, weights."""

    profile: str
    default_root: str | None = None
    roots: dict[str, str] = field(default_factory=dict)
    dataset: str | None = None
    sets: tuple[str, ...] = ()
    weights: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UserSet:
    """One user ``--set``, optionally scoped to a plugin or protocol name (``NAME:section.key=value``)."""

    text: str
    scope: str | None
    section: str
    key: str


@dataclass
class Run:
    """One evaluation (what ``echobench run`` would do) and every row it reports."""

    plugin: str
    protocol: str
    dataset: str
    root: str | None
    task: str
    sets: tuple[str, ...]
    profile: str
    #: The dataset whose ``--data-root`` it reads, when not its own (CAMUS subsets read CAMUS's folder).
    root_owner: str | None = None
    reason: str | None = None
    resolved: Resolved | None = None
    plan: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    result_path: str | None = None
    #: The :class:`UserError` it stopped with while running (its rows are then listed with it).
    failure: str | None = None

    @property
    def checkpoint_group(self) -> tuple[Any, ...]:
        """Runs with equal groups pretrain the same checkpoint (protocol settings do not enter it)."""
        pretraining = tuple(sorted(s for s in self.sets if not s.startswith("protocol.")))
        return (self.plugin, self.dataset, self.root, pretraining)


@dataclass
class PlannedRow:
    """A published number and how echobench reproduces it (``run``), or why it cannot (``reason``)."""

    row: SpecRow
    dataset: str | None
    task: str
    protocol: str | None
    run: Run | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        """Whether planning found nothing in its way (it may still fail while running: :attr:`why_not`)."""
        return self.reason is None and self.run is not None and self.run.reason is None

    @property
    def why_not(self) -> str | None:
        """Why the row has no echobench number: not runnable, or its run failed."""
        if self.reason is not None or self.run is None:
            return self.reason
        return self.run.reason or (None if self.run.failure is None else f"failed: {self.run.failure}")


@dataclass
class Plan:
    spec: Spec
    options: Options
    rows: list[PlannedRow]
    runs: list[Run]

    @property
    def comparable(self) -> bool:
        """Whether the numbers are the paper's experiment: its profile, on each row's own dataset."""
        return self.options.profile == "paper" and self.options.dataset is None


def parse_roots(values: Iterable[str]) -> tuple[str | None, dict[str, str]]:
    """``--data-root PATH`` (at most one: the spec's dataset, or ``--dataset``'s) and ``--data-root NAME=PATH``."""
    plain: list[str] = []
    named: dict[str, str] = {}
    datasets = registered_datasets()
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name in datasets:
            named[name] = path
        elif sep and "/" not in name and not name.startswith("~"):
            raise UserError(f"--data-root {value}: {name!r} is no installed dataset{did_you_mean(name, datasets)}")
        else:
            plain.append(value)
    if len(plain) > 1:
        raise UserError(f"--data-root given {len(plain)} plain paths ({', '.join(plain)}); name the others NAME=PATH")
    return (plain[0] if plain else None), named


def parse_weights(values: Iterable[str], spec: Spec) -> dict[str, str]:
    """``--weights NAME=PATH`` for the published weight files the spec names."""
    weights: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not path:
            raise UserError(
                f"--weights {value!r}: expected NAME=PATH, e.g. --weights {next(iter(spec.weights), 'x')}=/w.pt"
            )
        if name not in spec.weights:
            known = ", ".join(spec.weights) or "none"
            raise UserError(
                f"--weights {name!r}: spec {spec.name} names no such weights{did_you_mean(name, spec.weights)}; "
                f"it names: {known}"
            )
        weights[name] = path
    return weights


def parse_user_sets(values: Iterable[str]) -> list[UserSet]:
    out = []
    for text in values:
        assignment = text.partition("=")[0]
        scope, colon, _ = assignment.partition(":")
        body = text[len(scope) + 1 :] if colon else text
        parsed = parse_set([body])
        section = next(iter(parsed))
        out.append(UserSet(body, scope if colon else None, section, next(iter(parsed[section]))))
    return out


def merge_sets(row_sets: Iterable[str], user_sets: Iterable[str]) -> list[str]:
    """The spec's settings, then the user's; a user's length setting drops the spec's settings it replaces
    (:data:`LENGTH_TWINS`), and a later setting of the same key replaces an earlier one."""
    user = list(user_sets)
    user_keys = {_key(s) for s in user}
    dropped = {twin for key in user_keys for twin in LENGTH_TWINS.get(key, ()) if twin not in user_keys}
    kept = [s for s in row_sets if _key(s) not in dropped]
    merged: dict[str, str] = {}
    for item in [*kept, *user]:
        merged.pop(_key(item), None)
        merged[_key(item)] = item
    return list(merged.values())


def _key(item: str) -> str:
    return item.partition("=")[0].strip()


def applies(user: UserSet, plugin: str, protocol: str) -> bool:
    """Whether a user ``--set`` applies to a run of ``plugin`` with ``protocol`` (see the module docstring)."""
    if user.scope is not None:
        return user.scope in (plugin, protocol)
    if user.section == "method":
        return user.key in method_fields(plugin)
    if user.section == "pretrain":
        return user.key in _field_names(PretrainConfig)
    if user.section == "data":
        return user.key in _field_names(DataConfig)
    if user.key in RUNNER_PROTOCOL_KEYS:
        return True
    if user.key.startswith("eval_clips."):
        return user.key.removeprefix("eval_clips.") in EVAL_CLIP_FIELDS
    return user.key in protocol_fields(protocol)


@cache
def method_fields(plugin: str) -> frozenset[str]:
    """The fields of a method plugin's config."""
    return frozenset(_field_names(registry.load_method(plugin).Config))


@cache
def protocol_fields(protocol: str) -> frozenset[str]:
    """The settings of a protocol's config (its family's config dataclass)."""
    from echobench.protocols import get_family

    spec = registry.load_protocol(protocol)
    config = get_family(spec.family).config_from_dict(spec.settings.get("config", {}))
    return frozenset(_field_names(type(config)))


def _field_names(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def spec_sets(row: SpecRow, spec: Spec, options: Options) -> list[str]:
    """A row's own settings (geometry under the paper profile, table, method, weights), before the user's."""
    method = row.method
    sets: list[str] = []
    if method.geometry is not None and options.profile == "paper":
        sets.extend(spec.geometry[method.geometry].sets())
    sets.extend(row.block.sets)
    sets.extend(method.sets)
    if method.weights is not None and method.weights in options.weights:
        sets.append(f"pretrain.init_from={options.weights[method.weights]}")
    return sets


@cache
def metric_names(kind: str) -> frozenset[str]:
    """The metrics echobench computes for a task of ``kind`` (the keys of its metric function)."""
    if kind == "classification":
        return frozenset(classification_metrics(np.array([0, 1]), np.array([0, 1]), np.array([0.2, 0.8])))
    if kind == "regression":
        return frozenset(regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.0])))
    return frozenset(segmentation_metrics(np.ones((2, 2, 4, 1))))


def result_keys(metric: str, fraction: float, family: str, record: dict[str, Any] | None) -> tuple[str, str | None]:
    """Where a published row's number is in a result: ``(metric key, interval key)``.

    A label sweep reports ``<metric>@<fraction>`` (mean over its subset seeds); its interval is that of the one
    run at that fraction when the sweep has one subset seed (``<metric>@<fraction>@seed=<s>``), else none. K-fold
    is compared on the pooled out-of-fold predictions (``<metric>_pooled``), the number with an interval.
    """
    if family == "label_sweep":
        key = f"{metric}@{fraction:g}"
        seeded = [k for k in (record or {}).get("ci95", {}) if k.startswith(f"{key}@seed=")]
        return key, seeded[0] if len(seeded) == 1 else None
    if family == "kfold":
        return f"{metric}_pooled", f"{metric}_pooled"
    return metric, metric


def plan(spec: Spec, options: Options, *, resolve_runs: bool = True) -> Plan:
    """Every row of ``spec`` planned: reasons, runs in checkpoint order, each resolved and its labels checked
    (``resolve_runs``; ``--dry-run`` leaves that to :func:`echobench.plan.plan_run`, which does both)."""
    user = parse_user_sets(options.sets)
    _check_user_sets(user, spec)
    runs: dict[tuple[Any, ...], Run] = {}
    rows = []
    for row in spec.rows:
        planned = _plan_row(row, spec, options)
        rows.append(planned)
        if planned.reason is not None:
            continue
        plugin, protocol = row.method.plugin, planned.protocol
        assert plugin is not None and protocol is not None and planned.dataset is not None
        chosen = [u.text for u in user if applies(u, plugin, protocol)]
        sets = tuple(merge_sets(spec_sets(row, spec, options), chosen))
        owner = row.dataset.root_of if options.dataset is None else None
        root = _root(owner or planned.dataset, planned.dataset, spec, options)
        key = (plugin, protocol, planned.dataset, root, planned.task, sets)
        if key not in runs:
            runs[key] = Run(plugin, protocol, planned.dataset, root, planned.task, sets, options.profile, owner)
        planned.run = runs[key]
    ordered = _checkpoint_order(list(runs.values()))
    tables: dict[tuple[str, str | None], Any] = {}
    for run in ordered:
        run.reason = _check_run(run, spec, options, tables) if resolve_runs else _check_root(run, spec, options)
    return Plan(spec, options, rows, ordered)


def _plan_row(row: SpecRow, spec: Spec, options: Options) -> PlannedRow:
    method, entry, published = row.method, row.dataset, row.published
    task = row.block.task or published.task
    protocol = method.protocol or row.block.protocol
    dataset = entry.dataset if options.dataset is None or entry.private is not None else options.dataset
    planned = PlannedRow(row, dataset, task, protocol)
    planned.notes = [n for n in (method.note, entry.note if options.dataset is None else None) if n]
    if method.reason is not None:
        planned.reason = method.reason
    elif not published.comparable:
        planned.reason = f"the paper's unit ({published.unit}) cannot be converted to echobench's"
    elif entry.private is not None:
        planned.reason = f"private data: {entry.private}"
    elif entry.reason is not None and options.dataset is None:
        planned.reason = entry.reason
    elif task not in TASKS:
        planned.reason = f"echobench has no task for {published.task_as_printed!r}"
    elif method.weights is not None and method.weights_required and method.weights not in options.weights:
        planned.reason = (
            f"needs the published weights {spec.weights[method.weights]}; pass --weights {method.weights}=PATH"
        )
    else:
        kind = get_task(task).kind
        if published.metric not in metric_names(kind):
            planned.reason = f"echobench does not compute {published.metric} for {kind} tasks"
    if planned.reason is None and method.weights is not None and method.weights not in options.weights:
        planned.notes.append(
            f"pretrains from scratch: the paper starts from the published weights {spec.weights[method.weights]} "
            f"(pass --weights {method.weights}=PATH)"
        )
    return planned


def _root(owner: str, dataset: str, spec: Spec, options: Options) -> str | None:
    """The ``--data-root`` of ``dataset``: ``NAME=PATH`` for its ``owner`` (itself, or the dataset whose folder it
    reads), else the plain path when the dataset is the spec's (or ``--dataset``'s)."""
    if owner in options.roots:
        return options.roots[owner]
    if dataset == (options.dataset or spec.dataset):
        return options.default_root
    return None


def _check_user_sets(user: list[UserSet], spec: Spec) -> None:
    """A user ``--set`` must reach at least one row that has a plugin, and a scope must name one of the spec's
    plugins or protocols: a typo is refused before anything runs."""
    pairs = {(r.method.plugin, r.method.protocol or r.block.protocol) for r in spec.rows if r.method.plugin}
    names = {name for pair in pairs for name in pair if name}
    for item in user:
        if item.scope is not None and item.scope not in names:
            raise UserError(
                f"--set {item.scope}:{item.text}: {item.scope!r} is no plugin or protocol of spec "
                f"{spec.name}{did_you_mean(item.scope, names)}; use one of {', '.join(sorted(names))}"
            )
        if not any(applies(item, plugin, protocol) for plugin, protocol in pairs if plugin and protocol):
            raise UserError(
                f"--set {item.text}: no method, pretraining, data or protocol config of spec {spec.name} has the field "
                f"{item.key!r}; check the name, or scope it as PLUGIN:{item.text} / PROTOCOL:{item.text}"
            )


def _checkpoint_order(runs: list[Run]) -> list[Run]:
    """Runs grouped by the checkpoint they pretrain, groups in order of first appearance (stable)."""
    first: dict[tuple[Any, ...], int] = {}
    for index, run in enumerate(runs):
        first.setdefault(run.checkpoint_group, index)
    return sorted(runs, key=lambda run: first[run.checkpoint_group])


def _check_root(run: Run, spec: Spec, options: Options) -> str | None:
    """Why a run has no data: no ``--data-root`` for a dataset without a built-in copy."""
    if run.root is not None or getattr(registry.load_dataset(run.dataset), "default", None) is not None:
        return None
    owner = run.root_owner or run.dataset
    flag = "--data-root PATH" if owner == (options.dataset or spec.dataset) else f"--data-root {owner}=PATH"
    return f"dataset {run.dataset} not given: pass {flag}"


def _check_run(run: Run, spec: Spec, options: Options, tables: dict[tuple[str, str | None], Any]) -> str | None:
    """Why a run cannot start (its dataset not given, a setting refused, a task its dataset cannot label), or
    ``None`` with ``run.resolved`` set. Reads configs and label tables only (``tables``: those read so far)."""
    missing = _check_root(run, spec, options)
    if missing is not None:
        return missing
    try:
        run.resolved = resolve(
            run.plugin,
            run.protocol,
            dataset=run.dataset,
            data_root=run.root,
            task=run.task,
            sets=list(run.sets),
            profile=run.profile,
        )
        if (run.dataset, run.root) not in tables:
            tables[run.dataset, run.root] = open_dataset(DataConfig(dataset=run.dataset, root=run.root)).table
        run.resolved.task.targets(tables[run.dataset, run.root], run.dataset)
    except UserError as exc:
        return str(exc)
    return None
