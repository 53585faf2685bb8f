"""Writing a built leaderboard: Markdown, CSV, one self-contained HTML page (sortable tables, embedded plots),
a rich table on the console, and optionally the plots as MLflow artifacts.

Outputs are deterministic (no timestamps, fixed ordering, fixed PNG metadata) so a committed board can be
rebuilt byte for byte. Every piece of text that comes from results or published files is escaped for its format.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape as rich_escape
from rich.table import Table as RichTable

from echobench import plots
from echobench.atomic import write_text_atomic
from echobench.console import console
from echobench.leaderboard import (
    REPORTED,
    REPRODUCED,
    Built,
    Row,
    Table,
    cell,
    ci_cell,
    flags,
    rank_text,
    table_records,
)

TOP_PLOTTED = 10
LEGEND = (
    "Values are mean ± SD over seeds (every seed of every result file of one configuration). "
    "95 % CI: Student-t interval over seeds when there are several (seeds), else the single run's bootstrap "
    "interval, over patients (over videos where a dataset has no patient ids) (bootstrap). Rank ≈N: the paired "
    "bootstrap CI of the difference to the leader on the primary metric covers 0 (statistically tied with the "
    "leader), computed on the per-video predictions of the first result file of each row (its first seed), "
    "resampling patients where they carry patient ids. Rows marked reported are numbers printed in "
    "papers (not reproduced here; different data splits and models): they are not ranked unless the board is "
    "built with --with-published. Rows flagged 'pretrained on evaluated videos' used a checkpoint whose "
    "pretraining saw the test videos."
)
#: Added to the legend of a board that shows reported rows.
REPORTED_LEGEND = (
    "Each reported row's metrics follow the paper's own definition and sit under the echobench metric of that "
    "definition: f1, precision, recall of class 1 (the positive class: reduced or abnormal EF, MI); f1_negative, "
    "precision_negative, specificity of class 0; f1_macro, precision_macro, recall_macro averaged over both "
    "classes. A table gains such a column beside the board's class-1 column when a paper reports it; the row's "
    "flags name each printed metric's definition."
)


@dataclass(frozen=True)
class Plot:
    title: str
    png: bytes

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


# ---------------------------------------------------------------- plots


def board_plots(built: Built) -> list[Plot]:
    """Every plot the board's results allow, in a fixed order."""
    out: list[Plot] = []

    def add(title: str, png: bytes | None) -> None:
        if png is not None:
            out.append(Plot(title, png))

    for table in built.tables:
        reproduced = [r for r in table.rows if r.source == REPRODUCED and r.files][:TOP_PLOTTED]
        frames = {}
        for row in reproduced:
            frame = next((f.predictions() for f in row.files if f.predictions_path() is not None), None)
            if frame is not None:
                frames[row.method] = frame
        if not frames:
            continue
        name = f"{table.dataset} · {table.task.name} · {table.protocol}"
        add(f"ROC {name}", plots.roc_curves(frames, name))
        add(f"Reliability {name}", plots.reliability_curves(frames, name))
        if table.task.name in ("ef", "rvef") and all("score" not in f.columns for f in frames.values()):
            add(f"Agreement {name}", plots.regression_agreement(frames, name))
            add(f"Error by EF range {name}", plots.error_by_range(frames, name))
        elif all("score" not in f.columns for f in frames.values()):
            add(f"Agreement {name}", plots.regression_agreement(frames, name, unit=table.task.name))
    for (dataset, task), files in sorted(built.sweeps.items()):
        spec = built.board.task(task)
        assert spec is not None
        curves: dict[str, list[tuple[float, float, float]]] = {}
        for f in files:
            metrics = f.record.get("metrics") or {}
            points = []
            for key, value in metrics.items():
                match = re.fullmatch(rf"{re.escape(spec.primary)}@([0-9.]+)", key)
                if match and isinstance(value, int | float):
                    sd = metrics.get(f"{spec.primary}_sd@{match.group(1)}")
                    points.append((float(match.group(1)), float(value), float(sd) if sd is not None else np.nan))
            curves.setdefault(f.record["method"], []).extend(points)
        name = f"{dataset} · {task} · {files[0].record['protocol']}"
        add(f"Label fraction {name}", plots.label_fraction_curves(curves, spec.primary, name))
    for (dataset, task), files in sorted(built.variance.items()):
        spreads = {}
        for f in files:
            frame = f.predictions()
            if frame is not None and "sd" in frame.columns:
                spreads[f.record["method"]] = frame["sd"].to_numpy(float)
        add(f"Clip-start variance {dataset} · {task}", plots.clip_variance_boxes(spreads, f"{dataset} · {task}"))
    return out


# ---------------------------------------------------------------- markdown


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def md_escape(text: str) -> str:
    """Text safe inside a Markdown table cell or heading: HTML characters as entities; emphasis, code, link,
    heading and strike-through marks and the cell separator ``|`` backslash-escaped; line breaks as spaces."""
    text = html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _has_reported(built: Built) -> bool:
    return any(row.source == REPORTED for table in built.tables for row in table.rows)


def columns(table: Table) -> list[str]:
    cols = ["rank", "method", "vs leader", "seeds"]
    for metric in table.task.metrics:
        cols += [metric, f"{metric} 95% CI"]
    return [*cols, "flags"]


def row_cells(table: Table, row: Row) -> list[str]:
    cells = [rank_text(row), row.method, row.versus_leader or "–", str(row.n_seeds) if row.n_seeds else "–"]
    for metric in table.task.metrics:
        entry = row.metrics.get(metric)
        cells += [cell(entry), ci_cell(entry)]
    flag = flags(row)
    if row.setting:
        flag = f"{flag}: {row.setting}; {row.citation}"
    return [*cells, flag or "–"]


def markdown(built: Built) -> str:
    board = built.board
    lines = [f"# {md_escape(board.title)}", ""]
    if board.description:
        lines += [md_escape(board.description.strip()), ""]
    lines += [md_escape(LEGEND), ""]
    if _has_reported(built):
        lines += [md_escape(REPORTED_LEGEND), ""]
    if built.with_published:
        lines += ["**Built with --with-published: reported rows are ranked together with reproduced rows.**", ""]
    for section in board.sections:
        tables = [t for t in built.tables if t.section == section.title]
        if not tables:
            continue
        lines += [f"## {md_escape(section.title)}", ""]
        for table in tables:
            lines += [f"### {md_escape(table.title)}", ""]
            head = columns(table)
            lines.append("| " + " | ".join(md_escape(c) for c in head) + " |")
            lines.append("|" + "|".join("---" for _ in head) + "|")
            for row in table.rows:
                lines.append("| " + " | ".join(md_escape(c) for c in row_cells(table, row)) + " |")
            lines.append("")
    lines += [f"Plots: see {md_escape(board.name)}.html.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- csv


def csv_text(built: Built) -> str:
    records = table_records(built)
    buffer = io.StringIO()
    if not records:
        return ""
    names: list[str] = []
    for record in records:
        names += [k for k in record if k not in names]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    for record in records:
        writer.writerow(record)
    return buffer.getvalue()


# ---------------------------------------------------------------- html

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.reported{background:#fff8e6;font-style:italic}tr.leak td.flags{color:#b00020;font-weight:bold}
.legend{color:#555;font-size:13px}figure{display:inline-block;margin:0.5em}figcaption{font-size:12px;color:#555}
"""

# Sorts a table by the clicked column: numbers by value (leading number of the cell), text otherwise.
_SCRIPT = """
document.querySelectorAll("table.board th").forEach(function (th, index) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    th.closest("tr").querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var key = function (row) {
      var text = row.cells[index].textContent.trim();
      var number = parseFloat(text.replace(/^[^0-9+\\-.]+/, ""));
      return isNaN(number) ? text : number;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return ascending ? order : -order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_page(built: Built, figures: list[Plot]) -> str:
    board = built.board
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{h(board.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{h(board.title)}</h1>",
    ]
    if board.description:
        parts.append(f"<p>{h(board.description.strip())}</p>")
    parts.append(f'<p class="legend">{h(LEGEND)}</p>')
    if _has_reported(built):
        parts.append(f'<p class="legend">{h(REPORTED_LEGEND)}</p>')
    if built.with_published:
        parts.append(
            "<p><strong>Built with --with-published: reported rows are ranked with reproduced rows.</strong></p>"
        )
    for section in board.sections:
        tables = [t for t in built.tables if t.section == section.title]
        if not tables:
            continue
        parts.append(f"<h2>{h(section.title)}</h2>")
        for table in tables:
            parts.append(f'<h3 id="{h(table.anchor)}">{h(table.title)}</h3>')
            parts.append('<table class="board"><thead><tr>')
            parts.append("".join(f"<th>{h(c)}</th>" for c in columns(table)))
            parts.append("</tr></thead><tbody>")
            for row in table.rows:
                classes = [
                    c for c in ("reported" if row.source != REPRODUCED else "", "leak" if row.leakage else "") if c
                ]
                attr = f' class="{" ".join(classes)}"' if classes else ""
                cells = row_cells(table, row)
                tds = [f"<td>{h(c)}</td>" for c in cells[:-1]] + [f'<td class="flags">{h(cells[-1])}</td>']
                parts.append(f"<tr{attr}>{''.join(tds)}</tr>")
            parts.append("</tbody></table>")
    if figures:
        parts.append("<h2>Plots</h2>")
        for figure in figures:
            data = base64.b64encode(figure.png).decode("ascii")
            parts.append(
                f'<figure><img alt="{h(figure.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{h(figure.title)}</figcaption></figure>"
            )
    parts += [f"<script>{_SCRIPT}</script>", "</body></html>", ""]
    return "\n".join(parts)


# ---------------------------------------------------------------- console and files


def print_board(built: Built) -> None:
    """The board on the console: rank, method, seeds, mean ± SD per metric and flags (intervals in the files)."""
    for table in built.tables:
        rich_table = RichTable(title=rich_escape(f"{table.section} · {table.title}"))
        for column in ("rank", "method", "seeds", *table.task.metrics, "flags"):
            rich_table.add_column(rich_escape(column), overflow="fold")
        for row in table.rows:
            style = "italic yellow" if row.source != REPRODUCED else ("red" if row.leakage else None)
            values = [cell(row.metrics.get(m)) for m in table.task.metrics]
            seeds = str(row.n_seeds) if row.n_seeds else "–"
            cells = [rank_text(row), row.method, seeds, *values, flags(row) or "–"]
            rich_table.add_row(*(rich_escape(c) for c in cells), style=style)
        console.print(rich_table)


def write_outputs(built: Built, out: Path, figures: list[Plot]) -> list[Path]:
    """``<board>.md``, ``<board>.csv`` and ``<board>.html`` in ``out`` (each written atomically)."""
    name = built.board.name
    paths = [out / f"{name}.md", out / f"{name}.csv", out / f"{name}.html"]
    for path, text in zip(paths, (markdown(built), csv_text(built), html_page(built, figures)), strict=True):
        write_text_atomic(path, text)
    return paths


def log_plots_to_mlflow(run_id: str, figures: list[Plot], tracking_uri: str) -> None:
    """Attach each plot as a PNG artifact (under ``leaderboard/``) to an existing MLflow run."""
    import tempfile

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory() as folder:
        for figure in figures:
            path = Path(folder) / f"{figure.slug}.png"
            path.write_bytes(figure.png)
            client.log_artifact(run_id, str(path), artifact_path="leaderboard")
