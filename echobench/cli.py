"""The ``echobench`` command line (typer + rich). Output for people goes to stderr; ``--json`` owns stdout."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from echobench.console import console
from echobench.errors import Terminated, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark self-supervised methods on echocardiography videos.",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    no_args_is_help=True, help="Datasets: generate SynthEcho, check a dataset folder, fill its decode cache."
)
app.add_typer(data_app, name="data")

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a config field: method.mask_ratio=0.75, pretrain.steps=50, protocol.k=20"
    ),
]
ProfileOption = Annotated[
    str, typer.Option(help="Overrides applied before --set: quick (minutes on a CPU) or paper (paper defaults)")
]
DatasetOption = Annotated[str | None, typer.Option(help="Dataset name (default: synthecho, built in)")]
DataRootOption = Annotated[str | None, typer.Option("--data-root", help="Folder of the dataset on disk")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="YAML of sections method/pretrain/protocol/data (e.g. from echobench tune), before --set"
    ),
]


DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Resolve everything and print the plan (geometry, epochs, steps, batch, lr, where each value comes "
        "from); reads only the label table, trains and decodes nothing",
    ),
]


def _with_config(config: Path | None, sets: list[str] | None) -> list[str]:
    from echobench.config import config_file_sets

    return [*(config_file_sets(config) if config is not None else []), *(sets or [])]


@app.command()
def run(
    method: Annotated[str, typer.Option(help="Method plugin name (see `echobench list methods`)")],
    protocol: Annotated[str, typer.Option(help="Protocol name or path to a protocol YAML")] = "knn",
    dataset: DatasetOption = None,
    data_root: DataRootOption = None,
    task: Annotated[str | None, typer.Option(help="Task (default: the protocol's)")] = None,
    set_: SetOption = None,
    config: ConfigOption = None,
    profile: ProfileOption = "quick",
    seeds: Annotated[
        int | None, typer.Option(help="Repeat training-dependent protocols with N seeds (mean and per-seed values)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Leave out videos with out-of-range labels or truncated files (counted under the table)"
        ),
    ] = False,
    allow_patient_overlap: Annotated[
        bool,
        typer.Option("--allow-patient-overlap", help="Accept patients in several splits (flagged in the result)"),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Evaluate again even when an identical run already has a result file")
    ] = False,
    dry_run: DryRunOption = False,
) -> None:
    """Pretrain (or reuse a checkpoint), evaluate with a protocol, track in MLflow and write a result file."""
    from echobench.distributed import launched
    from echobench.results import json_safe
    from echobench.runner import execute, resolve

    if launched().size > 1:
        raise UserError("torchrun runs echobench pretrain only; pretrain under torchrun, then echobench run once")

    sets = _with_config(config, set_)
    if dry_run:
        from echobench.plan import plan_run

        plan = plan_run(method, protocol, dataset=dataset, data_root=data_root, task=task, sets=sets, profile=profile)
        _show_plan(plan, as_json)
        return
    resolved = resolve(
        method,
        protocol,
        dataset=dataset,
        data_root=data_root,
        task=task,
        sets=sets,
        profile=profile,
        seeds=seeds,
        skip_bad=skip_bad,
        allow_patient_overlap=allow_patient_overlap,
    )
    outcome = execute(resolved, force=force)
    summary = outcome.summary()
    if summary["summary"]:
        console.print(_summary_table(summary))
    if not summary["summary"] or summary.get("per_seed") and summary.get("seeds", 1) > 1:
        # Repeated seeds: the mean beside the per-seed rows, with the interval of that mean.
        console.print(_metrics_table(summary))
    if summary["evaluated_on_pretraining_videos"]:
        overlap = summary["pretraining_overlap"]["test"]
        console.print(
            f"[bold yellow]warning:[/] {overlap} test video(s) were in the encoder's pretraining set; these numbers "
            "are not held-out (pretrain on other splits, or evaluate on the test split)",
            highlight=False,
        )
    for note in outcome.notes:
        console.print(note, highlight=False, soft_wrap=True)
    console.print(f"result: {outcome.result_path}")
    if as_json:
        sys.stdout.write(json.dumps(json_safe(summary)) + "\n")


@app.command()
def results(
    method: Annotated[str | None, typer.Option(help="Only this method")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only this protocol")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the index entries as JSON lines on stdout")] = False,
) -> None:
    """List every result file: method, protocol, task, overrides, date and primary metric."""
    from echobench.results import list_index

    entries = [
        e
        for e in list_index()
        if (method is None or e["method"] == method) and (protocol is None or e["protocol"] == protocol)
    ]
    table = Table(title=f"results ({len(entries)})")
    for column in ("date", "method", "protocol", "task", "dataset", "overrides", "metric", "run"):
        table.add_column(column)
    for e in entries:
        value = e["value"]
        metric = f"{e['primary_metric']} {_fmt(value) if isinstance(value, float | int) else 'n/a'}"
        leak = " [yellow](test videos seen in pretraining)" if e["evaluated_on_pretraining_videos"] else ""
        table.add_row(
            (e["created"] or "")[:19],
            e["method"],
            e["protocol"],
            e["task"],
            e["dataset"],
            " ".join(e["overrides"]) or "-",
            metric + leak,
            e["run_hash"],
        )
    console.print(table)
    if as_json:
        for e in entries:
            sys.stdout.write(json.dumps(e) + "\n")


@app.command()
def pretrain(
    method: Annotated[str, typer.Option(help="Method plugin name")],
    dataset: DatasetOption = None,
    data_root: DataRootOption = None,
    set_: SetOption = None,
    config: ConfigOption = None,
    profile: ProfileOption = "quick",
    dry_run: DryRunOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print the plan as JSON on stdout")] = False,
) -> None:
    """Pretrain a method (resuming an interrupted run); reuses a finished checkpoint of the same config.

    Under ``torchrun`` every process trains its slice of each global batch (DDP); see the README."""
    from echobench.distributed import launched, shutdown
    from echobench.runner import pretrain_only

    if dry_run:
        from echobench.plan import plan_pretraining

        plan = plan_pretraining(
            method, dataset=dataset, data_root=data_root, sets=_with_config(config, set_), profile=profile
        )
        _show_plan(plan, as_json)
        return
    pretrained = pretrain_only(method, _with_config(config, set_), profile, dataset, data_root)
    shutdown()
    if launched().is_main:
        console.print(f"checkpoint {pretrained.checkpoint_hash}: {pretrained.folder} (step {pretrained.meta.step})")


@app.command()
def tune(
    method: Annotated[str, typer.Option(help="Method plugin name")],
    protocol: Annotated[str, typer.Option(help="Protocol name or path to a protocol YAML")],
    trials: Annotated[int, typer.Option(help="Trials this process runs (several processes share one study)")],
    task: Annotated[str | None, typer.Option(help="Task (default: the protocol's)")] = None,
    dataset: DatasetOption = None,
    data_root: DataRootOption = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage: a journal file path or an RDB URL (default: $ECHOBENCH_HOME/optuna)"),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: METHOD-PROTOCOL-DATASET-TASK)")] = None,
    search: Annotated[Path | None, typer.Option(help="YAML of ranges overriding the plugin's search_space")] = None,
    set_: SetOption = None,
    config: ConfigOption = None,
    profile: ProfileOption = "quick",
    seed: Annotated[int, typer.Option(help="Sampler seed, pinned in the study")] = 0,
    test_best: Annotated[bool, typer.Option("--test-best", help="Evaluate the best trial once on test")] = False,
    out: Annotated[Path | None, typer.Option(help="Where to write the best config YAML")] = None,
) -> None:
    """Search a method's settings with Optuna on the protocol's validation metric; writes the best config."""
    from echobench.distributed import launched
    from echobench.tune import TuneRequest
    from echobench.tune import tune as run_tune

    if launched().size > 1:
        raise UserError("echobench tune shares work through its study, not torchrun; start several tune processes")

    outcome = run_tune(
        TuneRequest(
            method=method,
            protocol=protocol,
            trials=trials,
            task=task,
            dataset=dataset,
            data_root=data_root,
            storage=storage,
            study=study,
            search=search,
            sets=_with_config(config, set_),
            profile=profile,
            seed=seed,
            test_best=test_best,
            out=out,
        )
    )
    if outcome.best_number is None:
        raise UserError(f"study {outcome.study_name!r} has no finished trial; see the trial errors above")
    console.print(
        f"study {outcome.study_name}: {outcome.finished} finished trials; best trial {outcome.best_number} "
        f"(validation {outcome.best_value:.4f}) {outcome.best_params}"
    )
    console.print(f"best config: {outcome.best_config}")
    if outcome.test_result is not None:
        console.print(f"test result of the best trial: {outcome.test_result}")


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="methods | protocols | datasets | tasks | profiles")] = "methods",
) -> None:
    """List installed plugins (with package and version), protocols, datasets, tasks or profiles."""
    from echobench import registry

    table = Table(title=what)
    if what in ("methods", "datasets"):
        group = registry.METHODS_GROUP if what == "methods" else registry.DATASETS_GROUP
        for column in ("name", "package", "version", "entry point", "status"):
            table.add_column(column)
        for info in registry.describe(group):
            status = f"[red]import failed: {info.error}" if info.error else "[green]ok"
            table.add_row(info.name, info.package, info.version, info.value, status)
    elif what == "protocols":
        for column in ("name", "family", "default task", "file"):
            table.add_column(column)
        for name, path in sorted(registry.available_protocols().items()):
            spec = registry.load_protocol(str(path))
            table.add_row(name, spec.family, spec.task, str(path))
    elif what == "tasks":
        from echobench.data.tasks import TASKS

        for column in ("name", "kind", "column", "description"):
            table.add_column(column)
        for task in TASKS.values():
            table.add_row(task.name, task.kind, task.column, task.description)
    elif what == "profiles":
        from echobench.profiles import PROFILES

        table.add_column("name")
        table.add_column("overrides")
        for name, overrides in PROFILES.items():
            table.add_row(name, json.dumps(overrides) if overrides else "(none: paper defaults)")
    else:
        raise UserError(f"cannot list {what!r}; use one of methods, protocols, datasets, tasks, profiles")
    console.print(table)


@app.command("validate-plugin")
def validate_plugin(
    name: Annotated[str, typer.Argument(help="Method plugin name")],
    set_: SetOption = None,
) -> None:
    """Run a plugin on tiny synthetic clips and check the Method contract."""
    from echobench import registry
    from echobench.config import parse_set
    from echobench.validate import validate

    overrides = parse_set(set_)
    checks = validate(registry.load_method(name), overrides.get("method", {}))
    table = Table(title=f"validate-plugin {name}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in checks:
        table.add_row(check.name, "[green]pass" if check.passed else "[red]FAIL", check.detail)
    console.print(table)
    failed = next((c for c in checks if not c.passed), None)
    if failed is not None:
        raise UserError(f"plugin {name!r} breaks the Method contract at '{failed.name}': {failed.detail}")


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="Method name, a Python identifier (also the package name)")],
    folder: Annotated[Path | None, typer.Option("--dir", help="Folder to create (default: ./NAME)")] = None,
) -> None:
    """Write a ready-to-install method plugin package that passes validate-plugin as generated."""
    from echobench.scaffold import create_plugin

    target = create_plugin(name, folder)
    console.print(f"plugin {name} written to {target}; next: pip install -e {target}, echobench validate-plugin {name}")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path | None, typer.Option(help="Output folder (default: the SynthEcho copy in the cache)")] = None,
    videos: Annotated[int | None, typer.Option(help="Number of videos")] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    frames: Annotated[int | None, typer.Option(help="Frames per video")] = None,
) -> None:
    """Generate SynthEcho, the procedural echo dataset, in EchoNet-Dynamic format."""
    from echobench.data.synthecho import synthesize_cli

    root = synthesize_cli(out=out, videos=videos, seed=seed, frames=frames)
    console.print(f"SynthEcho written to {root}")


DatasetNameOption = Annotated[str, typer.Option(help="Dataset name (see `echobench list datasets`)")]
DataFolderOption = Annotated[Path, typer.Option("--data-root", help="Folder of the dataset on disk")]


@data_app.command("verify")
def data_verify(dataset: DatasetNameOption, data_root: DataFolderOption) -> None:
    """Check a dataset folder against its format: files, decoding, labels, splits. Exit code 2 on a fault."""
    from rich.markup import escape

    from echobench import registry
    from echobench.data.verify import verify

    report = verify(registry.load_dataset(dataset), data_root)
    table = Table(title=f"data verify {dataset} {report.root}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    result = {"ok": "[green]ok", "warning": "[yellow]warning", "fault": "[red]FAULT"}
    for finding in report.findings:
        table.add_row(finding.check, result[finding.severity], escape(finding.detail))
    console.print(table)
    if report.faults:
        raise UserError(
            f"{len(report.faults)} fault(s) in {report.root} read as {dataset}; fix them (see the report above) "
            "and verify again"
        )
    console.print(f"{report.root} is a valid {dataset} folder")


@data_app.command("prepare")
def data_prepare(
    dataset: DatasetNameOption,
    data_root: DataFolderOption,
    method: Annotated[str, typer.Option(help="Method whose method.size the cache is for (as `run` resolves it)")] = (
        "videomae"
    ),
    set_: SetOption = None,
    profile: ProfileOption = "quick",
    size: Annotated[
        int | None, typer.Option(help="Working frame size in pixels; default: method.size after --profile and --set")
    ] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes (default: CPU cores)")] = os.cpu_count() or 1,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Leave unreadable videos out (recorded in the cache) instead of failing")
    ] = False,
) -> None:
    """Decode every video into the decode cache with parallel workers; an interrupted prepare resumes."""
    from rich.markup import escape

    from echobench import registry
    from echobench.data.decode_cache import DecodeCache

    if size is None:
        from echobench.runner import resolve_pretraining

        # The same resolution as `run`, so the cache prepared here is the one `run` with these options reads.
        size = resolve_pretraining(method, set_, profile)[1].size
    if size < 1 or workers < 1:
        raise UserError(f"--size ({size}) and --workers ({workers}) must be positive integers")
    root = data_root.expanduser()
    if not root.is_dir():
        raise UserError(f"--data-root {root} is not a folder; point it at the {dataset} dataset's root")
    data = registry.load_dataset(dataset)(root)
    listed = len(data)
    cache = DecodeCache.build(data, size, workers=workers, skip_bad=skip_bad)
    console.print(
        f"decode cache ready: {cache.folder} ({listed - len(cache.skipped)} of {listed} videos, {size}px)",
        highlight=False,
        soft_wrap=True,
    )
    for video_id, reason in cache.skipped.items():
        console.print(f"[yellow]skipped[/] {escape(video_id)}: {escape(reason)}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- leaderboards and paired comparisons


@app.command()
def leaderboard(
    board: Annotated[
        str | None, typer.Argument(help="Board name (leaderboards/<name>.yaml) or path; all if omitted")
    ] = None,
    results: Annotated[
        Path | None, typer.Option(help="Folder of result JSON (default: $ECHOBENCH_HOME/results)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: $ECHOBENCH_HOME/leaderboards)")] = None,
    with_published: Annotated[
        bool, typer.Option("--with-published", help="Rank numbers reported in papers together with reproduced rows")
    ] = False,
    mlflow_run: Annotated[
        str | None, typer.Option("--mlflow-run", help="Also log the plots as artifacts of this MLflow run id")
    ] = None,
) -> None:
    """Build a leaderboard from result files: Markdown, CSV and a self-contained HTML page with plots."""
    from echobench.board_output import board_plots, log_plots_to_mlflow, print_board, write_outputs
    from echobench.leaderboard import available_boards, build, discover_results, load_board
    from echobench.paths import echobench_home, results_dir

    names = [board] if board is not None else list(available_boards())
    if not names:
        raise UserError("no boards found; run from the echobench checkout or pass a path to a board YAML")
    found = discover_results(results if results is not None else results_dir())
    target = out if out is not None else echobench_home() / "leaderboards"
    for name in names:
        built = build(load_board(name), found, with_published=with_published)
        figures = board_plots(built)
        print_board(built)
        for path in write_outputs(built, target, figures):
            console.print(f"wrote {path}", highlight=False, soft_wrap=True)
        if mlflow_run is not None:
            from echobench.tracking import tracking_uri

            log_plots_to_mlflow(mlflow_run, figures, tracking_uri())
            console.print(f"logged {len(figures)} plots to MLflow run {mlflow_run}")


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Result JSON of method A")],
    b: Annotated[Path, typer.Argument(help="Result JSON of method B (same dataset, task and test videos)")],
    metric: Annotated[str | None, typer.Option(help="Metric (default: the task's primary metric)")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples")] = 2000,
    repeat_a: Annotated[
        list[Path] | None,
        typer.Option("--repeat-a", help="Another result of method A (e.g. another pretraining seed); A is their mean"),
    ] = None,
    repeat_b: Annotated[
        list[Path] | None, typer.Option("--repeat-b", help="Another result of method B; B is their mean")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Paired comparison of two results on their shared test videos: A − B with a paired bootstrap CI
    (patients resampled when the predictions carry patient_id) and the Wilcoxon signed-rank p-value. With
    --repeat-a/--repeat-b, a method's value is the mean over its results, each scored on the same resamples."""
    from echobench.compare import compare_results

    report = compare_results([a, *(repeat_a or [])], [b, *(repeat_b or [])], metric=metric, resamples=resamples)
    repeats = report["results_a"] > 1 or report["results_b"] > 1
    runs = f" · means of {report['results_a']} and {report['results_b']} results" if repeats else ""
    table = Table(title=f"{report['method_a']} vs {report['method_b']} · {report['task']} · {report['dataset']}{runs}")
    for column in ("metric", "A", "B", "A − B", "95% CI (paired bootstrap)", "Wilcoxon p", "units"):
        table.add_column(column)
    table.add_row(
        report["metric"],
        _fmt(report["value_a"]),
        _fmt(report["value_b"]),
        _fmt(report["difference"]),
        f"[{_fmt(report['ci_low'])}, {_fmt(report['ci_high'])}]",
        f"{report['wilcoxon_p']:.4g}",
        f"{report['n_units']} {report['unit']}s",
    )
    table.caption = report["verdict"]
    console.print(table)
    if as_json:
        from echobench.results import json_safe

        sys.stdout.write(json.dumps(json_safe(report)) + "\n")


def _metrics_table(summary: dict[str, Any]) -> Table:
    title = f"{summary['method']} · {summary['protocol']} · {summary['task']} · {summary['dataset']}"
    if summary.get("per_seed") and summary.get("seeds", 1) > 1:
        title += f" · mean of {summary['seeds']} seeds (val: first seed)"
    table = Table(title=title)
    for column in ("metric", "test", "95% CI", "val"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for name, value in summary["metrics"].items():
        low_high = summary["ci95"].get(name)
        ci = f"[{_fmt(low_high[0])}, {_fmt(low_high[1])}]" if low_high else ""
        val = summary["val_metrics"].get(name)
        table.add_row(name, _fmt(value), ci, _fmt(val) if val is not None else "")
    chosen = ", ".join(f"{k}={v}" for k, v in summary["chosen"].items() if "@" not in k)
    unit, units = summary.get("ci_unit"), summary.get("ci_units")
    resampled = f"; CI over {units} test {unit}s" if unit and units else ""
    table.caption = f"chosen on validation: {chosen or '-'}{resampled}; checkpoint {summary['checkpoint_hash']}"
    return table


def _summary_table(summary: dict[str, Any]) -> Table:
    """Repeats (seeds, label fractions, folds) as rows; metrics columns, ``x_sd`` folded in as ``x ± sd``."""
    title = f"{summary['method']} · {summary['protocol']} · {summary['task']} · {summary['dataset']}"
    rows = summary["summary"]
    columns = [c for c in rows[0] if not c.endswith("_sd")]
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        cells = []
        for column in columns:
            value, sd = row[column], row.get(f"{column}_sd")
            text = _fmt(value) if isinstance(value, float) or value is None else str(value)
            cells.append(f"{text} ± {_fmt(sd)}" if isinstance(sd, float) and math.isfinite(sd) else text)
        table.add_row(*cells)
    table.caption = f"checkpoint {summary['checkpoint_hash']}; per-row values in the result JSON"
    return table


def _show_plan(plan: dict[str, Any], as_json: bool) -> None:
    """A plan for people (stderr) and, with ``--json``, as one JSON object on stdout."""
    from echobench.results import json_safe

    pre = plan["pretrain"]
    model = plan["model"]
    console.print(
        f"[bold]{plan['method']}[/] on {plan['dataset']} ({plan['profile']} profile): {model['model']}, "
        f"{model['frames']} frames at stride {model['stride']}, {model['size']}², patch {model['patch']}, "
        f"tubelet {model['tubelet']}",
        highlight=False,
    )
    if pre["trainable"]:
        console.print(
            f"pretraining: {pre['epochs']:g} epochs × {pre['steps_per_epoch']} steps/epoch = {pre['steps']:,} steps "
            f"({pre['num_videos']} videos, global batch {pre['batch_size']}); lr {pre['lr']:g} "
            f"(effective {pre['lr_effective']:.3g}, {pre['lr_scaling']} scaling), warm-up {pre['warmup_steps']:,} "
            f"steps ({pre['warmup_epochs']:g} epochs); checkpoint {plan['checkpoint']['hash']} "
            f"{'exists' if plan['checkpoint']['complete'] else 'to train'}",
            highlight=False,
        )
    else:
        console.print("pretraining: none (the method has nothing to train)")
    protocol = plan.get("protocol")
    if protocol is not None:
        length = protocol.get("length")
        extra = (
            f": {length['epochs']:g} epochs × {length['steps_per_epoch']} steps/epoch = {length['steps']:,} steps"
            if length
            else ""
        )
        console.print(f"protocol {protocol['name']} (v{protocol['version']}) on task {plan['task']}{extra}")
    table = Table(title="where each value comes from")
    for column in ("setting", "value", "set by", "source"):
        table.add_column(column, overflow="fold")
    for row in plan["values"]:
        value = row["value"]
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        table.add_row(row["key"], shown, row["set_by"], row["source"] or "")
    console.print(table)
    for problem in plan["problems"]:
        console.print(f"[bold yellow]would stop:[/] {problem}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(json_safe(plan)) + "\n")


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def main() -> None:
    """Console entry point: user mistakes are one line on stderr and exit code 2, never a traceback.

    SIGTERM unwinds like Ctrl-C (MLflow runs end KILLED, locks are released); exit code 128 + signal number.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        app()
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        console.print("interrupted; caches and checkpoints are consistent, run the same command again to resume")
        raise SystemExit(130) from None
    except Terminated as exc:
        console.print(f"{exc}; caches and checkpoints are consistent, run the same command again to resume")
        raise SystemExit(128 + exc.signum) from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated(signum)


# Registers `echobench reproduce` on the app (its module imports `app` from here).
from echobench import cli_reproduce  # noqa: E402, F401

if __name__ == "__main__":
    main()
