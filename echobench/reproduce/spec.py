"""Reproduction specs (``leaderboards/reproduce/<name>.yaml``): a seed paper's headline tables as echobench runs.

A spec never holds a published number. It references rows of the paper's normalised published CSV
(``leaderboards/published/<key>.csv``, :func:`echobench.published.read_rows`) by table (``Table 3``: the
``source`` column after the transcription file name), an optional ``setting`` pattern and the printed method
name, and says how each printed method is run: a method plugin and its ``--set`` overrides, or the reason it
cannot be run. Value, echobench metric and metric definition are read from the CSV, so a spec row is compared with
the same quantity a board would compare it with. Every reference must match: a table that matches no row, a
printed method or metric that the spec does not map, or a dataset it cannot name is a :class:`UserError` while
loading, never a silently shorter table.

Keys of a spec (see ``leaderboards/reproduce/README.md``):

* ``name``, ``paper`` (the seed paper's method, e.g. ``DISCOVER``), ``published`` (the CSV's key), ``dataset``
  (the dataset a plain ``--data-root PATH`` is for), ``profile`` (default ``paper``), ``description``;
* ``datasets``: published dataset name → ``{dataset, root_of, note}`` (another echobench dataset, or the one
  whose ``--data-root`` it reads) or ``{private: why}`` / ``{reason: why}`` (cannot be run); a published dataset
  that is an echobench dataset name needs no entry;
* ``geometry``: named blocks ``{source, method: {...}, pretrain: {...}}`` of the geometry and schedule of the
  comparing paper, applied under the ``paper`` profile to the methods that name them (the ``quick`` profile is one
  CPU geometry for every method);
* ``weights``: name → description of a published weight file, passed as ``--weights NAME=PATH``;
* ``methods``: printed method → ``{plugin, sets, protocol, geometry, weights, weights_required, note}`` or
  ``{reason}``;
* ``tables``: blocks ``{table, title, setting, protocol, task, sets, metrics, methods}``; ``setting`` is a regular
  expression searched in the published row's setting, ``metrics`` restricts the printed metrics, ``methods``
  overrides per printed method (``sets`` appended; ``protocol``, ``note`` and ``reason`` replaced: a ``reason``
  makes the method not runnable in that table).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from echobench import registry
from echobench.config import did_you_mean, load_yaml
from echobench.data.tasks import TASKS
from echobench.errors import UserError
from echobench.published import PublishedRow, read_rows

SPEC_KEYS = (
    "name",
    "paper",
    "published",
    "dataset",
    "profile",
    "description",
    "datasets",
    "geometry",
    "weights",
    "methods",
    "tables",
)
TABLE_KEYS = ("table", "part", "title", "setting", "protocol", "task", "sets", "metrics", "methods")
METHOD_KEYS = ("plugin", "sets", "protocol", "geometry", "weights", "weights_required", "note", "reason")
DATASET_KEYS = ("dataset", "root_of", "note", "private", "reason")
GEOMETRY_KEYS = ("source", "method", "pretrain")
#: ``list`` is the subcommand ``echobench reproduce list``, so no spec may take the name.
RESERVED = ("list",)


@dataclass(frozen=True)
class DatasetEntry:
    """Where a published dataset's rows run: an echobench ``dataset`` (whose ``--data-root`` is that of
    ``root_of``), or why they cannot (``private`` data, another ``reason``)."""

    dataset: str | None
    root_of: str | None = None
    note: str | None = None
    private: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Geometry:
    """A comparing paper's geometry and schedule for the methods it compares against (``source`` says where)."""

    name: str
    source: str
    method: dict[str, Any]
    pretrain: dict[str, Any]

    def sets(self) -> list[str]:
        """The block as ``--set`` strings (values in JSON, which ``--set`` reads as YAML)."""
        sections = (("method", self.method), ("pretrain", self.pretrain))
        return [f"{section}.{key}={json.dumps(value)}" for section, values in sections for key, value in values.items()]


@dataclass(frozen=True)
class MethodEntry:
    """How a printed method runs: ``plugin`` with ``sets`` (and a ``protocol`` other than its table's, a
    ``geometry`` block, a published ``weights`` file), or the ``reason`` it cannot."""

    printed: str
    plugin: str | None = None
    sets: tuple[str, ...] = ()
    protocol: str | None = None
    geometry: str | None = None
    weights: str | None = None
    weights_required: bool = False
    note: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Block:
    """Rows of one published table (those whose setting matches ``setting``) run with one protocol and task."""

    table: str
    part: str | None
    title: str
    setting: str | None
    protocol: str | None
    task: str | None
    sets: tuple[str, ...]
    metrics: tuple[str, ...] | None
    methods: dict[str, MethodEntry]

    @property
    def name(self) -> str:
        """``Table 4`` or, for one of several blocks of a table, ``Table 4 · linear probe`` (its ``part``)."""
        return self.table if self.part is None else f"{self.table} · {self.part}"


@dataclass(frozen=True)
class SpecRow:
    """One published number of a spec: its published row and how it is run."""

    block: Block
    published: PublishedRow
    method: MethodEntry
    dataset: DatasetEntry

    @property
    def label(self) -> str:
        """``Table 3 | DISCOVER | echonet-dynamic | F1_pct`` (with ``@ 10 %`` labels below 100 %)."""
        fraction = "" if self.published.label_fraction == 1.0 else f" @ {self.published.label_fraction:.0%} labels"
        return (
            f"{self.block.name} | {self.published.method} | {self.published.dataset} | "
            f"{self.published.metric_as_printed}{fraction}"
        )


@dataclass(frozen=True)
class Spec:
    name: str
    paper: str
    path: Path
    published_path: Path
    citation: str
    dataset: str
    profile: str
    description: str
    geometry: dict[str, Geometry]
    weights: dict[str, str]
    blocks: tuple[Block, ...]
    rows: tuple[SpecRow, ...]

    def tables(self) -> list[str]:
        """The spec's tables in the order they first appear."""
        return list(dict.fromkeys(block.table for block in self.blocks))


def specs_dirs() -> list[Path]:
    """``reproduce/`` under each folder boards are looked up in (``./leaderboards``, then the checkout's)."""
    from echobench.leaderboard import boards_dirs

    return [folder / "reproduce" for folder in boards_dirs()]


def available_specs() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in reversed(specs_dirs()):
        if folder.is_dir():
            found |= {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    return dict(sorted(found.items()))


def find_spec(name: str) -> Path:
    """A spec by name (``leaderboards/reproduce/<name>.yaml``) or a path to a spec YAML."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    specs = available_specs()
    if name in specs:
        return specs[name]
    listed = ", ".join(specs) or "(none found)"
    raise UserError(f"unknown reproduction spec {name!r}{did_you_mean(name, specs)}; available: {listed}")


def table_of(source: str) -> str:
    """The table part of a published row's ``source`` (``004_x.txt Table 2 (note)`` → ``Table 2 (note)``)."""
    return source.split(" ", 1)[1] if " " in source else ""


def in_table(row: PublishedRow, table: str) -> bool:
    """Whether ``row`` is from ``table`` (``Table 2`` matches ``Table 2`` and ``Table 2 (a note)``, not
    ``Table 2b``)."""
    part = table_of(row.source)
    return part == table or part.startswith(table + " ")


def load_spec(name: str) -> Spec:
    """Read and check a spec; every reference must resolve to a published row (see the module docstring)."""
    path = find_spec(name)
    raw = load_yaml(path)
    where = f"reproduction spec {path}"
    _known_keys(raw, SPEC_KEYS, where)
    for key in ("name", "paper", "published", "dataset", "tables", "methods"):
        if key not in raw:
            raise UserError(f"{where} lacks the key {key!r}; see leaderboards/reproduce/README.md")
    spec_name = str(raw["name"])
    if spec_name in RESERVED:
        raise UserError(f"{where}: a spec cannot be named {spec_name!r} (it is a subcommand); rename it")
    published_path = path.parent.parent / "published" / f"{raw['published']}.csv"
    published = read_rows(published_path)
    geometry = {key: _geometry(key, value, where) for key, value in (raw.get("geometry") or {}).items()}
    weights = {str(k): str(v) for k, v in (raw.get("weights") or {}).items()}
    methods = {str(k): _method(str(k), v, geometry, weights, where) for k, v in _mapping(raw["methods"], where).items()}
    datasets = {str(k): _dataset(str(k), v, where) for k, v in (raw.get("datasets") or {}).items()}
    blocks, rows = [], []
    for number, item in enumerate(_list(raw["tables"], f"{where} tables"), start=1):
        block, block_rows = _block(item, f"{where} tables[{number}]", published, methods, datasets)
        blocks.append(block)
        rows.extend(block_rows)
    _check_parts(blocks, where)
    return Spec(
        name=spec_name,
        paper=str(raw["paper"]),
        path=path,
        published_path=published_path,
        citation=rows[0].published.citation if rows else "",
        dataset=str(raw["dataset"]),
        profile=str(raw.get("profile", "paper")),
        description=" ".join(str(raw.get("description", "")).split()),
        geometry=geometry,
        weights=weights,
        blocks=tuple(blocks),
        rows=tuple(rows),
    )


def _block(
    raw: Any,
    where: str,
    published: list[PublishedRow],
    methods: dict[str, MethodEntry],
    datasets: dict[str, DatasetEntry],
) -> tuple[Block, list[SpecRow]]:
    raw = _mapping(raw, where)
    _known_keys(raw, TABLE_KEYS, where)
    if "table" not in raw:
        raise UserError(f"{where} lacks the key 'table' (e.g. table: Table 3)")
    table, setting = str(raw["table"]), raw.get("setting")
    matched = [r for r in published if in_table(r, table) and (setting is None or re.search(setting, r.setting))]
    what = f"{table}" + (f" with setting ~ {setting!r}" if setting is not None else "")
    if not matched:
        tables = sorted({table_of(r.source) for r in published})
        raise UserError(f"{where}: {what} matches no published row; tables: {', '.join(tables)}")
    metrics = raw.get("metrics")
    if metrics is not None:
        metrics = tuple(str(m) for m in metrics)
        printed = {r.metric_as_printed for r in matched}
        missing = [m for m in metrics if m not in printed]
        if missing:
            raise UserError(
                f"{where}: {what} has no printed metric {missing[0]!r}; printed: {', '.join(sorted(printed))}"
            )
        matched = [r for r in matched if r.metric_as_printed in metrics]
    overrides = _mapping(raw.get("methods") or {}, f"{where} methods")
    block_methods: dict[str, MethodEntry] = {}
    for printed in dict.fromkeys(r.method for r in matched):
        if printed not in methods:
            raise UserError(
                f"{where}: {what} has the method {printed!r}, which the spec's methods do not map"
                f"{did_you_mean(printed, methods)}; add it (with a plugin or the reason it cannot run)"
            )
        block_methods[printed] = _override(methods[printed], overrides.get(printed), f"{where} methods.{printed}")
    unknown = sorted(set(overrides) - set(block_methods))
    if unknown:
        raise UserError(f"{where}: methods.{unknown[0]} overrides a method that {what} does not have")
    protocol = raw.get("protocol")
    block = Block(
        table=table,
        part=None if raw.get("part") is None else str(raw["part"]),
        title=" ".join(str(raw.get("title", table)).split()),
        setting=setting,
        protocol=None if protocol is None else str(protocol),
        task=raw.get("task"),
        sets=tuple(str(s) for s in raw.get("sets") or ()),
        metrics=metrics,
        methods=block_methods,
    )
    _check_protocols(block, matched, where)
    rows = [SpecRow(block, r, block_methods[r.method], _dataset_of(r, datasets, where)) for r in matched]
    return block, rows


def _check_parts(blocks: list[Block], where: str) -> None:
    """Several blocks of one table each need a distinct ``part`` (it names their rows)."""
    for table in dict.fromkeys(b.table for b in blocks):
        parts = [b.part for b in blocks if b.table == table]
        if len(parts) > 1 and (None in parts or len(set(parts)) < len(parts)):
            raise UserError(f"{where}: {table} has {len(parts)} blocks; give each a distinct 'part' (e.g. part: Base)")


def _check_protocols(block: Block, rows: list[PublishedRow], where: str) -> None:
    """Every runnable method has a protocol that exists; a row below 100 % labels needs a label-sweep protocol."""
    for method in block.methods.values():
        if method.reason is not None:
            continue
        name = method.protocol or block.protocol
        if name is None:
            raise UserError(
                f"{where}: method {method.printed!r} has a plugin but neither it nor the table names a protocol"
            )
        spec = registry.load_protocol(name)
        fractions = {r.label_fraction for r in rows if r.method == method.printed}
        if fractions != {1.0} and spec.family != "label_sweep":
            raise UserError(
                f"{where}: {method.printed!r} has rows at {sorted(fractions)} of the labels but protocol {name} is "
                "no label-sweep protocol (e.g. label-sweep, segmentation-vjepa-sweep)"
            )
    if block.task is not None and block.task not in TASKS:
        raise UserError(f"{where}: unknown task {block.task!r}{did_you_mean(block.task, TASKS)}")


def _dataset_of(row: PublishedRow, datasets: dict[str, DatasetEntry], where: str) -> DatasetEntry:
    if row.dataset in datasets:
        return datasets[row.dataset]
    if row.dataset in registered_datasets():
        return DatasetEntry(dataset=row.dataset)
    raise UserError(
        f"{where}: published dataset {row.dataset!r} is no echobench dataset; map it under datasets "
        "(to a dataset, or say why it cannot run: private or reason)"
    )


def registered_datasets() -> set[str]:
    """Names of the installed dataset plugins (entry points, nothing imported)."""
    return {ep.name for ep in metadata.entry_points(group=registry.DATASETS_GROUP)}


def _geometry(name: str, raw: Any, where: str) -> Geometry:
    raw = _mapping(raw, f"{where} geometry.{name}")
    _known_keys(raw, GEOMETRY_KEYS, f"{where} geometry.{name}")
    if "source" not in raw:
        raise UserError(f"{where} geometry.{name} lacks 'source' (where its values come from)")
    return Geometry(
        name=name,
        source=" ".join(str(raw["source"]).split()),
        method=dict(_mapping(raw.get("method") or {}, f"{where} geometry.{name}.method")),
        pretrain=dict(_mapping(raw.get("pretrain") or {}, f"{where} geometry.{name}.pretrain")),
    )


def _method(printed: str, raw: Any, geometry: dict[str, Geometry], weights: dict[str, str], where: str) -> MethodEntry:
    here = f"{where} methods.{printed}"
    raw = _mapping(raw, here)
    _known_keys(raw, METHOD_KEYS, here)
    if ("plugin" in raw) == ("reason" in raw):
        raise UserError(f"{here} needs exactly one of 'plugin' (how it runs) and 'reason' (why it cannot)")
    if raw.get("geometry") is not None and raw["geometry"] not in geometry:
        raise UserError(f"{here}: unknown geometry {raw['geometry']!r}{did_you_mean(str(raw['geometry']), geometry)}")
    if raw.get("weights") is not None and raw["weights"] not in weights:
        raise UserError(f"{here}: unknown weights {raw['weights']!r}{did_you_mean(str(raw['weights']), weights)}")
    return MethodEntry(
        printed=printed,
        plugin=raw.get("plugin"),
        sets=tuple(str(s) for s in raw.get("sets") or ()),
        protocol=raw.get("protocol"),
        geometry=raw.get("geometry"),
        weights=raw.get("weights"),
        weights_required=bool(raw.get("weights_required", False)),
        note=_text(raw.get("note")),
        reason=_text(raw.get("reason")),
    )


def _override(method: MethodEntry, raw: Any, where: str) -> MethodEntry:
    if raw is None:
        return method
    raw = _mapping(raw, where)
    _known_keys(raw, ("sets", "protocol", "note", "reason"), where)
    return dataclasses.replace(
        method,
        sets=(*method.sets, *(str(s) for s in raw.get("sets") or ())),
        protocol=raw.get("protocol", method.protocol),
        note=_text(raw.get("note")) or method.note,
        reason=_text(raw.get("reason")) or method.reason,
    )


def _dataset(name: str, raw: Any, where: str) -> DatasetEntry:
    here = f"{where} datasets.{name}"
    raw = _mapping(raw, here)
    _known_keys(raw, DATASET_KEYS, here)
    if sum(key in raw for key in ("dataset", "private", "reason")) != 1:
        raise UserError(f"{here} needs exactly one of 'dataset', 'private' and 'reason'")
    dataset = raw.get("dataset")
    if dataset is not None and dataset not in registered_datasets():
        raise UserError(f"{here}: {dataset!r} is no installed dataset{did_you_mean(dataset, registered_datasets())}")
    return DatasetEntry(
        dataset=dataset,
        root_of=raw.get("root_of"),
        note=_text(raw.get("note")),
        private=_text(raw.get("private")),
        reason=_text(raw.get("reason")),
    )


def _text(value: Any) -> str | None:
    return None if value is None else " ".join(str(value).split())


def _known_keys(raw: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in keys:
            raise UserError(
                f"{where} has an unknown key {key!r}{did_you_mean(str(key), keys)}; keys: {', '.join(keys)}"
            )


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping, got {raw!r}")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where} must be a non-empty list")
    return raw
