"""Leaderboards: result JSON files → ranked tables per (section, dataset, task, protocol) → Markdown, CSV, HTML.

A board (``leaderboards/<name>.yaml``) names its datasets, sections of protocols (frozen encoder vs fine-tuned),
tasks with their metrics and primary metric (with its direction), an optional method order for ties, and the
published-number files whose rows it may show. Results are discovered by walking the results folder for
``*.json`` files recognised by their keys; result files of one configuration that differ only in seeds are
aggregated (mean ± SD over every seed value). Published rows are marked ``reported`` and are not ranked unless
``with_published`` is set. A reported number sits under the echobench metric of the paper's own definition
(``echobench.published``: e.g. Temporal MAE's F1 under ``f1_negative``); when the board lists only the class-1
column a reader would look under (``f1``), the table gains that metric's column beside it. A row whose checkpoint
was pretrained on the evaluated videos is flagged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

import echobench
from echobench.config import did_you_mean, stable_hash
from echobench.console import console
from echobench.data.tasks import TASKS
from echobench.errors import UserError
from echobench.metrics import metric_arrays
from echobench.published import NOT_APPLICABLE, PublishedRow, describe, positive_reading, read_rows
from echobench.stats import paired_metric_bootstrap, summarise_seeds

RESULT_KEYS = frozenset({"schema", "method", "protocol", "metrics"})
LEAKAGE_KEYS = ("evaluated_on_pretraining_split", "evaluated_on_pretraining_videos", "leakage")
#: Settings that repeat a configuration rather than change it: seeds and the number of bootstrap resamples.
REPEAT_FIELDS = frozenset({"seed", "ci_resamples", "subset_seeds"})
TIE_RESAMPLES = 1000
REPORTED = "reported"
REPRODUCED = "reproduced"
#: A table's (section, dataset, task, protocol).
TableKey = tuple[str, str, str, str]


# ---------------------------------------------------------------- boards


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metrics: tuple[str, ...]
    primary: str
    higher_is_better: bool


@dataclass(frozen=True)
class Section:
    title: str
    frozen: bool
    protocols: tuple[str, ...]


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    description: str
    datasets: tuple[str, ...]
    sections: tuple[Section, ...]
    tasks: tuple[TaskSpec, ...]
    methods: tuple[str, ...] = ()
    published: tuple[str, ...] = ()
    label_sweep: tuple[str, ...] = ("label-sweep",)
    clip_variance: tuple[str, ...] = ("clip-variance",)
    path: Path | None = None

    def task(self, name: str) -> TaskSpec | None:
        return next((t for t in self.tasks if t.name == name), None)


def boards_dirs() -> list[Path]:
    """Where board YAMLs are looked up: ``./leaderboards`` then the source checkout's ``leaderboards``."""
    here = Path.cwd() / "leaderboards"
    source = Path(echobench.__file__).resolve().parent.parent / "leaderboards"
    return [here] if here.resolve() == source.resolve() else [here, source]


def available_boards() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in reversed(boards_dirs()):
        if folder.is_dir():
            found |= {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    return dict(sorted(found.items()))


def find_board(name: str) -> Path:
    """A board by name (``leaderboards/<name>.yaml``) or a path to a board YAML."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    boards = available_boards()
    if name in boards:
        return boards[name]
    listed = ", ".join(boards) or "(none found)"
    raise UserError(f"unknown board {name!r}{did_you_mean(name, boards)}; available boards: {listed}")


def load_board(name: str) -> Board:
    path = find_board(name)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"board {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"board {path} must be a mapping with name, datasets, sections and tasks")
    try:
        tasks = tuple(
            TaskSpec(
                name=t["name"],
                metrics=tuple(t["metrics"]),
                primary=t["primary"],
                higher_is_better=bool(t["higher_is_better"]),
            )
            for t in raw["tasks"]
        )
        sections = tuple(
            Section(title=s["title"], frozen=bool(s["frozen"]), protocols=tuple(s["protocols"]))
            for s in raw["sections"]
        )
        board = Board(
            name=raw.get("name", path.stem),
            title=raw.get("title", path.stem),
            description=raw.get("description", ""),
            datasets=tuple(raw["datasets"]),
            sections=sections,
            tasks=tasks,
            methods=tuple(raw.get("methods", ())),
            published=tuple(raw.get("published", ())),
            label_sweep=tuple(raw.get("label_sweep", ("label-sweep",))),
            clip_variance=tuple(raw.get("clip_variance", ("clip-variance",))),
            path=path,
        )
    except (KeyError, TypeError) as exc:
        raise UserError(f"board {path} lacks or misformats {exc}; see leaderboards/synthecho.yaml") from None
    for task in board.tasks:
        if task.primary not in task.metrics:
            raise UserError(f"board {path}: task {task.name} has primary metric {task.primary!r} not in its metrics")
    return board


# ---------------------------------------------------------------- results


@dataclass
class ResultFile:
    path: Path
    record: dict[str, Any]

    @property
    def leakage(self) -> bool:
        return any(self.record.get(key) is True for key in LEAKAGE_KEYS)

    def values(self, metric: str) -> list[float]:
        """Every seed's value of ``metric``: ``per_seed`` when it holds several, else the headline value."""
        per_seed = (self.record.get("per_seed") or {}).get(metric)
        if isinstance(per_seed, list) and len(per_seed) > 1:
            return [_number(v) for v in per_seed]
        return [_number((self.record.get("metrics") or {}).get(metric))]

    def predictions_path(self) -> Path | None:
        """The sibling ``<stem>.predictions.csv``, else the recorded ``predictions_csv`` (relative to the JSON)."""
        sibling = self.path.with_name(f"{self.path.stem}.predictions.csv")
        if sibling.is_file():
            return sibling
        recorded = self.record.get("predictions_csv")
        if isinstance(recorded, str) and recorded:
            candidate = Path(recorded)
            candidate = candidate if candidate.is_absolute() else self.path.parent / candidate
            if candidate.is_file():
                return candidate
        return None

    def predictions(self) -> pd.DataFrame | None:
        path = self.predictions_path()
        if path is None:
            return None
        try:
            return pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            console.print(f"[yellow]warning:[/] cannot read predictions {path}: {exc}; skipped", highlight=False)
            return None

    def variant(self) -> str:
        """Hash of everything that changes the configuration except seeds (results of one variant are repeats)."""
        r = self.record

        def strip(value: Any) -> Any:
            return {k: v for k, v in value.items() if k not in REPEAT_FIELDS} if isinstance(value, dict) else value

        return stable_hash(
            r.get("method"),
            r.get("plugin_version"),
            r.get("profile"),
            strip(r.get("method_config")),
            strip(r.get("pretrain_config")),
            strip(r.get("protocol_config")),
            r.get("protocol_version"),
            r.get("task_version"),
            r.get("eval_clips"),
            r.get("dataset_hash"),
            length=8,
        )


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def discover_results(folder: Path) -> list[ResultFile]:
    """Every result JSON under ``folder`` (recursively, sorted by path).

    A JSON file that is not a result (an index, a config) is passed over silently unless it looks like a broken
    result; unreadable JSON and result-like files with missing keys are named and skipped with a warning.
    """
    if not folder.is_dir():
        raise UserError(f"results folder {folder} does not exist; pass --results DIR (the folder of result JSON)")
    found: list[ResultFile] = []
    for path in sorted(folder.rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            _skip(path, f"not readable JSON ({exc})")
            continue
        if not isinstance(record, dict):
            _skip(path, "not a result (a JSON object with schema, method, protocol, metrics is expected)")
            continue
        missing = RESULT_KEYS - record.keys()
        if missing:
            if len(missing) < len(RESULT_KEYS) and ("metrics" in record or "method" in record):
                _skip(path, f"looks like a result but lacks {sorted(missing)}")
            continue
        if not isinstance(record["metrics"], dict) or not isinstance(record["method"], str):
            _skip(path, "result with a malformed 'metrics' or 'method' field")
            continue
        found.append(ResultFile(path, record))
    return found


def _skip(path: Path, why: str) -> None:
    from rich.markup import escape

    console.print(f"[yellow]warning:[/] skipped {escape(str(path))}: {escape(why)}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- tables


@dataclass
class Row:
    """One line of a board table: a reproduced configuration (aggregated over seeds) or a reported number."""

    method: str
    source: str
    metrics: dict[str, dict[str, float]]
    n_seeds: int = 0
    n_results: int = 0
    variant: str = ""
    leakage: bool = False
    files: list[ResultFile] = field(default_factory=list)
    citation: str = ""
    setting: str = ""
    rank: int | None = None
    versus_leader: str = ""
    tied: bool | None = None

    def primary(self, metric: str) -> float:
        return self.metrics.get(metric, {}).get("mean", float("nan"))


@dataclass
class Table:
    section: str
    frozen: bool
    dataset: str
    task: TaskSpec
    protocol: str
    rows: list[Row] = field(default_factory=list)

    @property
    def title(self) -> str:
        arrow = "higher is better" if self.task.higher_is_better else "lower is better"
        return f"{self.dataset} · {self.task.name} · {self.protocol} (primary: {self.task.primary}, {arrow})"

    @property
    def anchor(self) -> str:
        return "-".join(("t", self.section, self.dataset, self.task.name, self.protocol)).replace(" ", "_").lower()


@dataclass
class Built:
    board: Board
    tables: list[Table]
    sweeps: dict[tuple[str, str], list[ResultFile]]
    variance: dict[tuple[str, str], list[ResultFile]]
    with_published: bool


def aggregate(files: list[ResultFile], metrics: Iterable[str]) -> dict[str, dict[str, float]]:
    """Mean ± SD and 95 % interval of each metric over every seed value of ``files``.

    Several seeds: Student-t interval of the mean over seeds (``ci_source = seeds``). One seed: the per-video
    bootstrap interval recorded in the result (``ci_source = bootstrap``).
    """
    out: dict[str, dict[str, float]] = {}
    for metric in metrics:
        values = [v for f in files for v in f.values(metric)]
        summary = summarise_seeds(values)
        entry = {"mean": summary.mean, "sd": summary.sd, "n": float(summary.n)}
        if summary.n >= 2:
            entry |= {"ci_low": summary.ci_low, "ci_high": summary.ci_high, "ci_source": "seeds"}
        else:
            recorded = (files[0].record.get("ci95") or {}).get(metric) if len(files) == 1 else None
            ok = isinstance(recorded, list) and len(recorded) == 2
            low, high = (_number(recorded[0]), _number(recorded[1])) if ok else (float("nan"), float("nan"))
            entry |= {"ci_low": low, "ci_high": high, "ci_source": "bootstrap" if ok else ""}
        out[metric] = entry
    return out


def build(board: Board, results: list[ResultFile], with_published: bool = False) -> Built:
    """Group results and published rows into the board's tables, aggregate seeds, rank, and mark ties."""
    section_of = {p: s for s in board.sections for p in s.protocols}
    groups: dict[tuple[str, str, str, str, str], list[ResultFile]] = {}
    sweeps: dict[tuple[str, str], list[ResultFile]] = {}
    variance: dict[tuple[str, str], list[ResultFile]] = {}
    for result in results:
        r = result.record
        if r.get("dataset") not in board.datasets or board.task(r.get("task", "")) is None:
            continue
        key2 = (r["dataset"], r["task"])
        if r["protocol"] in board.label_sweep:
            sweeps.setdefault(key2, []).append(result)
        elif r["protocol"] in board.clip_variance:
            variance.setdefault(key2, []).append(result)
        elif r["protocol"] in section_of:
            key = (r["dataset"], r["task"], r["protocol"], r["method"], result.variant())
            groups.setdefault(key, []).append(result)
    _check_metrics(board, [f for files in groups.values() for f in files])
    placed = [(_published_key(board, published), published) for published in _published_rows(board)]
    beside = _reported_columns(board, placed)
    tables: dict[TableKey, Table] = {}
    for section in board.sections:
        for dataset in board.datasets:
            for task in board.tasks:
                for protocol in section.protocols:
                    key = (section.title, dataset, task.name, protocol)
                    tables[key] = Table(section.title, section.frozen, dataset, _widened(task, beside, key), protocol)
    variants_per_method: dict[tuple[str, str, str, str], set[str]] = {}
    for dataset, task, protocol, method, variant in groups:
        variants_per_method.setdefault((dataset, task, protocol, method), set()).add(variant)
    for (dataset, task, protocol, method, variant), files in sorted(groups.items()):
        table = tables[(section_of[protocol].title, dataset, task, protocol)]
        label = method if len(variants_per_method[(dataset, task, protocol, method)]) == 1 else f"{method} [{variant}]"
        row = Row(
            method=label,
            source=REPRODUCED,
            metrics=aggregate(files, table.task.metrics),
            n_seeds=sum(len(f.values(table.task.primary)) for f in files),
            n_results=len(files),
            variant=variant,
            leakage=any(f.leakage for f in files),
            files=files,
        )
        table.rows.append(row)
    for key, published in placed:
        if key not in tables:
            title, dataset, task, protocol = key
            spec = board.task(task)
            assert spec is not None
            frozen = next(s.frozen for s in board.sections if s.title == title)
            tables[key] = Table(title, frozen, dataset, _widened(spec, beside, key), protocol)
        tables[key].rows.append(_reported_row(published, tables[key].task))
    ordered = [t for t in tables.values() if t.rows]
    for table in ordered:
        rank_table(table, board.methods, with_published)
    return Built(board, ordered, sweeps, variance, with_published)


def _check_metrics(board: Board, files: list[ResultFile]) -> None:
    """A board metric that no matching result reports is a mistake in the board (or the wrong results folder)."""
    if not files:
        return
    for task in board.tasks:
        of_task = [f for f in files if f.record.get("task") == task.name]
        if not of_task:
            continue
        absent = [m for m in task.metrics if not any(m in (f.record.get("metrics") or {}) for f in of_task)]
        if absent:
            have = sorted({m for f in of_task for m in f.record["metrics"]})
            raise UserError(
                f"board {board.name}: task {task.name} names metric(s) {', '.join(absent)} that no result reports; "
                f"results have: {', '.join(have)}"
            )


def _published_rows(board: Board) -> list[list[PublishedRow]]:
    """Published numbers for the board's datasets and tasks, one list per (paper, method, setting, dataset, task)."""
    folder = board.path.parent if board.path is not None else Path("leaderboards")
    grouped: dict[tuple[str, ...], list[PublishedRow]] = {}
    for name in board.published:
        for row in read_rows(folder / name):
            if not row.comparable or row.dataset not in board.datasets or board.task(row.task) is None:
                continue
            key = (row.paper, row.method, row.setting, row.dataset, row.task, " ".join(row.source.split()[1:3]))
            grouped.setdefault(key, []).append(row)
    return list(grouped.values())


def _published_key(board: Board, published: list[PublishedRow]) -> TableKey:
    """The (section, dataset, task, protocol) table a group of published rows goes to."""
    first = published[0]
    title = next((s.title for s in board.sections if s.frozen == first.frozen), board.sections[0].title)
    protocol = first.protocol
    if first.label_fraction != 1.0:
        # Fewer training labels is another benchmark, not a row to rank against full-label results.
        protocol = f"{protocol} ({first.label_fraction:.0%} labels)"
    return title, first.dataset, first.task, protocol


def _reported_columns(
    board: Board, placed: list[tuple[TableKey, list[PublishedRow]]]
) -> dict[TableKey, dict[str, list[str]]]:
    """Per table, the metrics reported rows need beside each board column: a published number whose metric
    (of its paper's definition, e.g. ``f1_negative``) the board does not list, while it lists the class-1 column
    that the printed name reads as (``f1``)."""
    out: dict[TableKey, dict[str, list[str]]] = {}
    for key, published in placed:
        spec = board.task(key[2])
        assert spec is not None
        for row in published:
            column = positive_reading(row.metric_as_printed)
            if row.metric not in spec.metrics and column in spec.metrics:
                needed = out.setdefault(key, {}).setdefault(column, [])
                if row.metric not in needed:
                    needed.append(row.metric)
    return out


def _widened(spec: TaskSpec, beside: dict[TableKey, dict[str, list[str]]], key: TableKey) -> TaskSpec:
    """``spec`` with the metrics reported rows of table ``key`` need, each right after its board column."""
    extra = beside.get(key)
    if not extra:
        return spec
    metrics = tuple(m for column in spec.metrics for m in (column, *sorted(extra.get(column, ()))))
    return replace(spec, metrics=metrics)


def _reported_row(published: list[PublishedRow], spec: TaskSpec) -> Row:
    """A reported row: each published number under its own echobench metric (of the paper's definition), the
    definitions of the class-dependent ones named in its setting."""
    metrics: dict[str, dict[str, Any]] = {}
    by_metric = {r.metric: r for r in published}
    for metric in spec.metrics:
        if metric in by_metric:
            sd = by_metric.get(f"{metric}_sd")
            metrics[metric] = {
                "mean": by_metric[metric].value,
                "sd": sd.value if sd is not None else float("nan"),
                "n": float("nan"),
                "ci_low": float("nan"),
                "ci_high": float("nan"),
                "ci_source": "",
            }
    first = published[0]
    fraction = "" if first.label_fraction == 1.0 else f"; {first.label_fraction:.0%} labels"
    classes = TASKS[spec.name].classes if spec.name in TASKS else ()
    defined = [by_metric[m] for m in metrics if by_metric[m].definition != NOT_APPLICABLE]
    definitions = ", ".join(f"{r.metric_as_printed} = {r.metric} ({describe(r.definition, classes)})" for r in defined)
    return Row(
        method=first.method,
        source=REPORTED,
        metrics=metrics,
        citation=f"{first.citation} ({first.source})",
        setting=f"{first.setting}{fraction}" + (f"; as the paper defines them: {definitions}" if defined else ""),
    )


def rank_table(table: Table, method_order: tuple[str, ...], with_published: bool) -> None:
    """Order rows by the primary metric (direction from the board), rank the eligible ones (reproduced rows;
    reported ones too with ``with_published``), and mark rows statistically tied with the leader."""
    spec = table.task
    sign = -1.0 if spec.higher_is_better else 1.0
    order_index = {m: i for i, m in enumerate(method_order)}

    def key(row: Row) -> tuple[Any, ...]:
        value = row.primary(spec.primary)
        eligible = row.source == REPRODUCED or with_published
        missing = math.isnan(value)
        return (
            not eligible,
            missing,
            0.0 if missing else sign * value,
            order_index.get(row.method, 1 << 30),
            row.method,
            row.setting,
            row.variant,
        )

    table.rows.sort(key=key)
    eligible = [
        r for r in table.rows if (r.source == REPRODUCED or with_published) and not math.isnan(r.primary(spec.primary))
    ]
    previous, rank = None, 0
    for position, row in enumerate(eligible, start=1):
        value = row.primary(spec.primary)
        rank = rank if value == previous else position
        row.rank, previous = rank, value
    if eligible:
        mark_ties(table, eligible)


def mark_ties(table: Table, ranked: list[Row]) -> None:
    """Each ranked reproduced row against the leader: paired bootstrap CI of (row − leader) on the primary metric
    over the test videos both predicted; a CI covering 0 is "tied with the leader"."""
    leader = ranked[0]
    leader.versus_leader = "leader"
    leader_frame = _first_predictions(leader)
    for row in ranked[1:]:
        if row.source != REPRODUCED or leader.source != REPRODUCED or leader_frame is None:
            row.versus_leader = "n/a (no paired predictions)"
            continue
        frame = _first_predictions(row)
        outcome = None if frame is None else paired_difference(leader_frame, frame, table.task, row_first=True)
        if outcome is None:
            row.versus_leader = "n/a (no paired predictions)"
            continue
        diff, low, high, units = outcome
        row.tied = bool(low <= 0.0 <= high)
        verdict = "tied with leader" if row.tied else "differs from leader"
        row.versus_leader = f"{verdict}: Δ {diff:+.4f} [{low:+.4f}, {high:+.4f}] over {units}"


def _first_predictions(row: Row) -> pd.DataFrame | None:
    for f in row.files:
        frame = f.predictions()
        if frame is not None:
            return frame
    return None


def per_video(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per video: segmentation frames (one row per image) are averaged per video, in first-seen order; a
    video's ``patient_id`` is kept (paired intervals resample patients)."""
    if frame["video_id"].is_unique:
        return frame
    by_video = frame.groupby("video_id", sort=False)
    numeric = [c for c in frame.select_dtypes("number").columns if c != "patient_id"]
    out = by_video[numeric].mean()
    if "patient_id" in frame.columns:
        out["patient_id"] = by_video["patient_id"].first()
    return out.reset_index()


def paired_difference(
    a: pd.DataFrame, b: pd.DataFrame, task: TaskSpec, row_first: bool = False, resamples: int = TIE_RESAMPLES
) -> tuple[float, float, float, str] | None:
    """``metric(b) − metric(a)`` if ``row_first`` else ``metric(a) − metric(b)`` on the videos both predicted,
    with its paired bootstrap CI over videos (patients when a ``patient_id`` column is present) and what was
    resampled (e.g. ``"430 patients"``)."""
    kind = TASKS[task.name].kind if task.name in TASKS else ("regression" if not task.higher_is_better else "")
    left, right = aligned(per_video(a), per_video(b))
    if left.empty:
        return None
    first, second = (right, left) if row_first else (left, right)
    got_a, got_b = metric_arrays(first, kind, task.primary), metric_arrays(second, kind, task.primary)
    if got_a is None or got_b is None:
        return None
    groups = left["patient_id"].astype(str).tolist() if "patient_id" in left.columns else None
    diff, low, high = paired_metric_bootstrap(
        got_a[0], task.primary, got_a[1], got_b[1], groups=groups, n_resamples=resamples
    )
    units = f"{len(set(groups))} patients" if groups is not None else f"{len(left)} videos"
    return diff, low, high, units


def aligned(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``a`` and ``b`` for the videos both predicted, in the same order (one row per video)."""
    if len(a) == len(b) and (a["video_id"].to_numpy() == b["video_id"].to_numpy()).all():
        return a.reset_index(drop=True), b.reset_index(drop=True)
    shared = a[a["video_id"].isin(set(b["video_id"]))]
    return shared.reset_index(drop=True), b.set_index("video_id").loc[shared["video_id"]].reset_index()


# ---------------------------------------------------------------- formatting


def fmt(value: float, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def cell(entry: dict[str, Any] | None) -> str:
    """``mean ± sd`` (just the mean without an SD)."""
    if not entry:
        return "–"
    sd = entry.get("sd", float("nan"))
    return fmt(entry["mean"]) if math.isnan(sd) else f"{fmt(entry['mean'])} ± {fmt(sd)}"


def ci_cell(entry: dict[str, Any] | None) -> str:
    if not entry or math.isnan(entry.get("ci_low", float("nan"))):
        return "–"
    return f"[{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}] ({entry['ci_source']})"


def flags(row: Row) -> str:
    out = []
    if row.source == REPORTED:
        out.append(REPORTED)
    if row.leakage:
        out.append("pretrained on evaluated videos")
    return "; ".join(out)


def rank_text(row: Row) -> str:
    if row.rank is None:
        return "–"
    return f"≈{row.rank}" if row.tied else str(row.rank)


def table_records(built: Built) -> list[dict[str, Any]]:
    """The long CSV: one record per row with every metric's mean, SD, interval and interval source (empty when
    undefined)."""
    records = []
    for table in built.tables:
        for row in table.rows:
            record: dict[str, Any] = {
                "section": table.section,
                "dataset": table.dataset,
                "task": table.task.name,
                "protocol": table.protocol,
                "primary_metric": table.task.primary,
                "rank": "" if row.rank is None else row.rank,
                "tied_with_leader": "" if row.tied is None else row.tied,
                "versus_leader": row.versus_leader,
                "method": row.method,
                "source": row.source,
                "variant": row.variant,
                "n_results": row.n_results,
                "n_seeds": row.n_seeds,
                "pretrained_on_evaluated_videos": row.leakage,
                "setting": row.setting,
                "citation": row.citation,
            }
            for metric in table.task.metrics:
                entry = row.metrics.get(metric, {})
                for key, suffix in (("mean", ""), ("sd", "_sd"), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
                    value = entry.get(key, float("nan"))
                    record[f"{metric}{suffix}"] = "" if math.isnan(value) else f"{value:.6f}"
                record[f"{metric}_ci_source"] = entry.get("ci_source", "")
            records.append(record)
    return records
