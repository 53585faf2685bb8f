"""The side-by-side table of a reproduction (published | echobench | 95 % CI | published inside the CI?) as JSON,
Markdown and a rich table, and the listing of ``echobench reproduce list``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from echobench import registry
from echobench.atomic import write_text_atomic
from echobench.paths import echobench_home
from echobench.reproduce.planning import Plan, PlannedRow, result_keys
from echobench.reproduce.spec import Spec
from echobench.results import json_safe

#: Keys of every row of ``--dry-run --json`` (and of the written table, which adds the echobench columns).
ROW_KEYS = (
    "row",
    "method",
    "dataset",
    "protocol",
    "task",
    "published_metric",
    "metric",
    "published",
    "runnable",
    "reason",
    "plan",
)


def planned_row(planned: PlannedRow) -> dict[str, Any]:
    """A row as planned: what it compares, how it runs (or why not) and its run's plan."""
    published, run = planned.row.published, planned.run
    return {
        "row": planned.row.label,
        "method": published.method,
        "dataset": planned.dataset,
        "protocol": planned.protocol,
        "task": planned.task,
        "published_metric": published.metric_as_printed,
        "metric": published.metric,
        "published": published.value,
        "runnable": planned.runnable,
        "reason": planned.why_not,
        "plan": None if run is None or planned.reason is not None else run.plan,
        "table": planned.row.block.name,
        "plugin": planned.row.method.plugin,
        "definition": published.definition,
        "unit": published.unit,
        "label_fraction": published.label_fraction,
        "sets": None if run is None else list(run.sets),
        "notes": planned.notes,
    }


def result_row(planned: PlannedRow) -> dict[str, Any]:
    """A planned row with its echobench number, 95 % interval and whether the published value lies inside it."""
    out = planned_row(planned)
    run = planned.run
    out |= {"echobench": None, "ci95": None, "inside_ci": None, "result_key": None, "result_path": None}
    if run is None or run.record is None or planned.why_not is not None:
        return out
    family = registry.load_protocol(run.protocol).family
    key, ci_key = result_keys(out["metric"], out["label_fraction"], family, run.record)
    value = run.record.get("metrics", {}).get(key)
    out |= {"result_key": key, "result_path": run.result_path}
    if value is None or (isinstance(value, float) and math.isnan(value)):
        out["reason"] = f"the result has no value for {key}"
        return out
    interval = None if ci_key is None else run.record.get("ci95", {}).get(ci_key)
    out["echobench"] = value
    if interval is not None and all(isinstance(v, int | float) and math.isfinite(v) for v in interval):
        low, high = interval
        out["ci95"] = [low, high]
        out["inside_ci"] = bool(low <= out["published"] <= high)
    return out


def title(plan: Plan) -> str:
    spec, options = plan.spec, plan.options
    text = f"{spec.paper} reproduction (spec {spec.name}) · profile {options.profile}"
    if options.dataset is not None:
        text += f" · every row on {options.dataset}"
    return text


def caveat(plan: Plan) -> str | None:
    """Why the numbers are not the paper's experiment, or ``None``."""
    reasons = []
    if plan.options.profile != "paper":
        reasons.append(f"the {plan.options.profile} profile is a CPU-sized stand-in, not the paper's recipe")
    if plan.options.dataset is not None:
        reasons.append(f"every row runs on {plan.options.dataset}, not on the paper's datasets")
    if not reasons:
        return None
    return "NOT COMPARABLE with the paper's numbers: " + "; ".join(reasons)


def document(plan: Plan, *, with_results: bool) -> dict[str, Any]:
    """The whole table as one JSON-ready object."""
    rows = [result_row(r) if with_results else planned_row(r) for r in plan.rows]
    return json_safe(
        {
            "spec": plan.spec.name,
            "paper": plan.spec.paper,
            "citation": plan.spec.citation,
            "published_csv": str(plan.spec.published_path),
            "profile": plan.options.profile,
            "dataset_override": plan.options.dataset,
            "comparable": plan.comparable,
            "title": title(plan),
            "caveat": caveat(plan),
            "user_sets": list(plan.options.sets),
            "rows": rows,
        }
    )


def default_out(plan: Plan) -> Path:
    """``$ECHOBENCH_HOME/reproduce/<spec>-<profile>[-<dataset>]``: smoke tests never overwrite a real table."""
    suffix = "" if plan.options.dataset is None else f"-{plan.options.dataset}"
    return echobench_home() / "reproduce" / f"{plan.spec.name}-{plan.options.profile}{suffix}"


def write(doc: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """``<spec>.md`` and ``<spec>.json`` in ``folder``, each written atomically (temp file + rename)."""
    md, js = folder / f"{doc['spec']}.md", folder / f"{doc['spec']}.json"
    write_text_atomic(js, json.dumps(doc, indent=2) + "\n")
    write_text_atomic(md, markdown(doc))
    return md, js


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _ci(row: dict[str, Any]) -> str:
    return "" if row["ci95"] is None else f"[{_fmt(row['ci95'][0])}, {_fmt(row['ci95'][1])}]"


def _inside(row: dict[str, Any]) -> str:
    return {True: "yes", False: "no", None: ""}[row["inside_ci"]]


def _fraction(row: dict[str, Any]) -> str:
    return "" if row["label_fraction"] == 1.0 else f" ({row['label_fraction']:.0%} labels)"


def _metric(row: dict[str, Any]) -> str:
    return f"{row['published_metric']} → {row['metric']}"


def markdown(doc: dict[str, Any]) -> str:
    """The table as Markdown: compared rows, then the rows not run with their reasons."""
    lines = [f"# {doc['title']}", ""]
    if doc["caveat"]:
        lines += [f"> **{doc['caveat']}**", ""]
    lines += [f"Published numbers: `{doc['published_csv']}` ({doc['citation']}).", ""]
    if doc["user_sets"]:
        lines += ["Settings added with --set: " + ", ".join(f"`{s}`" for s in doc["user_sets"]), ""]
    done = [r for r in doc["rows"] if r["echobench"] is not None]
    lines += [
        "| table | method | dataset | metric (paper → echobench) | published | echobench | 95 % CI | "
        "published inside CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in done:
        lines.append(
            f"| {r['table']} | {_cell(r['method'])}{_fraction(r)} | {r['dataset']} | {_metric(r)} | "
            f"{_fmt(r['published'])} | {_fmt(r['echobench'])} | {_ci(r)} | {_inside(r)} |"
        )
    missing = _grouped_missing(doc["rows"])
    if missing:
        lines += [
            "",
            "## Rows without an echobench number",
            "",
            "| table | method | dataset | metrics | reason |",
            "|---|---|---|---|---|",
        ]
        for (table, method, dataset, reason), metrics in missing.items():
            lines.append(f"| {table} | {_cell(method)} | {dataset or '-'} | {', '.join(metrics)} | {_cell(reason)} |")
    notes = sorted({(r["method"], n) for r in doc["rows"] for n in r["notes"]})
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_cell(method)}: {_cell(note)}" for method, note in notes]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _grouped_missing(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[str]]:
    """Rows without a number, one entry per (table, method, dataset, reason) listing its printed metrics."""
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for r in rows:
        if r["echobench"] is None:
            key = (r["table"], r["method"] + _fraction(r), r["dataset"], r["reason"] or "not run")
            grouped.setdefault(key, []).append(r["published_metric"])
    return grouped


def rich_table(doc: dict[str, Any]) -> Table:
    table = Table(title=escape(doc["title"]), caption=escape(doc["caveat"] or ""))
    for column in ("table", "method", "dataset", "metric", "published", "echobench", "95% CI", "inside", "reason"):
        table.add_column(column, overflow="fold")
    for r in doc["rows"]:
        table.add_row(
            r["table"],
            escape(r["method"] + _fraction(r)),
            r["dataset"] or "-",
            escape(_metric(r)),
            _fmt(r["published"]),
            _fmt(r.get("echobench")),
            _ci(r) if "ci95" in r else "",
            _inside(r) if "inside_ci" in r else "",
            escape(r["reason"] or ""),
        )
    return table


def list_entries(specs: list[Spec]) -> list[dict[str, Any]]:
    """``reproduce list --json``: one ``{"spec", "paper", "table", "rows"}`` per table of each spec; ``rows`` is the
    list of its rows (method, plugin, dataset, profile, protocol, task, printed and echobench metric, definition,
    published value, and the reason a row cannot run where the spec alone says so)."""
    entries = []
    for spec in specs:
        for table in spec.tables():
            rows = [
                {
                    "row": row.label,
                    "method": row.published.method,
                    "plugin": row.method.plugin,
                    "dataset": row.dataset.dataset,
                    "profile": spec.profile,
                    "protocol": row.method.protocol or row.block.protocol,
                    "task": row.block.task or row.published.task,
                    "published_metric": row.published.metric_as_printed,
                    "metric": row.published.metric,
                    "definition": row.published.definition,
                    "published": row.published.value,
                    "reason": row.method.reason or row.dataset.private or row.dataset.reason,
                }
                for row in spec.rows
                if row.block.table == table
            ]
            entries.append({"spec": spec.name, "paper": spec.paper, "table": table, "rows": rows})
    return entries


def list_table(specs: list[Spec]) -> Table:
    table = Table(title="reproduction specs (leaderboards/reproduce)")
    for column in ("spec", "paper", "table", "what", "protocols", "rows", "with a plugin"):
        table.add_column(column, overflow="fold")
    for spec in specs:
        for name in spec.tables():
            blocks = [b for b in spec.blocks if b.table == name]
            rows = [r for r in spec.rows if r.block.table == name]
            protocols = sorted({m.protocol or b.protocol for b in blocks for m in b.methods.values() if m.plugin})
            table.add_row(
                spec.name,
                escape(spec.paper),
                name,
                escape("; ".join(dict.fromkeys(b.title for b in blocks))),
                ", ".join(p for p in protocols if p),
                str(len(rows)),
                str(sum(r.method.plugin is not None for r in rows)),
            )
    return table
