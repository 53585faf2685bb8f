"""``echobench reproduce``: registers itself on :data:`echobench.cli.app` when imported."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from echobench.cli import app
from echobench.console import console
from echobench.errors import UserError


@app.command("reproduce")
def reproduce(
    spec: Annotated[
        str, typer.Argument(help="'list', or a spec name (leaderboards/reproduce/<name>.yaml) or path to one")
    ],
    data_root: Annotated[
        list[str] | None,
        typer.Option("--data-root", help="PATH of the spec's dataset (or --dataset's); NAME=PATH for another"),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Run every row on this dataset (synthecho: a smoke test, not comparable)")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="paper (default: the spec's) or quick")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="section.key=value for every row whose config has the field; PLUGIN:... or PROTOCOL:... for those",
        ),
    ] = None,
    weights: Annotated[
        list[str] | None, typer.Option("--weights", help="NAME=PATH of a published weight file the spec names")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for <spec>.md and <spec>.json (default: $ECHOBENCH_HOME/reproduce/...)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan every row (configs and label tables only); run nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table (or the plan, or the list) as JSON")] = False,
    force: Annotated[bool, typer.Option("--force", help="Evaluate again rows that already have a result file")] = False,
) -> None:
    """Re-run a seed paper's headline tables and put echobench's numbers beside the published ones.

    `echobench reproduce list` shows every spec and its tables."""
    from echobench.reproduce import report
    from echobench.reproduce.planning import Options, parse_roots, parse_weights, plan
    from echobench.reproduce.running import attach_plans, execute_runs
    from echobench.reproduce.spec import available_specs, load_spec

    if spec == "list":
        specs = [load_spec(str(path)) for path in available_specs().values()]
        console.print(report.list_table(specs))
        if as_json:
            sys.stdout.write(json.dumps(report.list_entries(specs)) + "\n")
        return
    loaded = load_spec(spec)
    chosen = profile or loaded.profile
    from echobench.profiles import profile_overrides

    profile_overrides(chosen)
    if dataset is not None and dataset not in _datasets():
        raise UserError(f"--dataset {dataset!r} is no installed dataset; see `echobench list datasets`")
    default_root, roots = parse_roots(data_root or [])
    options = Options(
        profile=chosen,
        default_root=default_root,
        roots=roots,
        dataset=dataset,
        sets=tuple(set_ or ()),
        weights=parse_weights(weights or [], loaded),
    )
    planned = plan(loaded, options, resolve_runs=not dry_run)
    if dry_run:
        attach_plans(planned)
        doc = report.document(planned, with_results=False)
        console.print(report.rich_table(doc))
        if as_json:
            keep = (*report.ROW_KEYS, "table", "definition", "label_fraction", "sets", "notes")
            rows = [{k: r[k] for k in keep} for r in doc["rows"]]
            sys.stdout.write(
                json.dumps(
                    {
                        "spec": doc["spec"],
                        "paper": doc["paper"],
                        "profile": doc["profile"],
                        "comparable": doc["comparable"],
                        "rows": rows,
                    }
                )
                + "\n"
            )
        return
    execute_runs(planned, force=force)
    doc = report.document(planned, with_results=True)
    console.print(report.rich_table(doc))
    for path in report.write(doc, out if out is not None else report.default_out(planned)):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")


def _datasets() -> set[str]:
    from echobench.reproduce.spec import registered_datasets

    return registered_datasets()
