"""The ``echobench`` command line (typer + rich). Output for people goes to stderr; ``--json`` owns stdout."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from echobench.console import console
from echobench.errors import UserError

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
) -> None:
    """Pretrain (or reuse a checkpoint), evaluate with a protocol, track in MLflow and write a result file."""
    from echobench.distributed import launched
    from echobench.results import json_safe
    from echobench.runner import execute, resolve

    if launched().size > 1:
        raise UserError("torchrun runs echobench pretrain only; pretrain under torchrun, then echobench run once")

    sets = _with_config(config, set_)
    resolved = resolve(
        method, protocol, dataset=dataset, data_root=data_root, task=task, sets=sets, profile=profile, seeds=seeds
    )
    outcome = execute(resolved)
    summary = outcome.summary()
    console.print(_summary_table(summary) if summary["summary"] else _metrics_table(summary))
    console.print(f"result: {outcome.result_path}")
    if as_json:
        sys.stdout.write(json.dumps(json_safe(summary)) + "\n")


@app.command()
def pretrain(
    method: Annotated[str, typer.Option(help="Method plugin name")],
    dataset: DatasetOption = None,
    data_root: DataRootOption = None,
    set_: SetOption = None,
    config: ConfigOption = None,
    profile: ProfileOption = "quick",
) -> None:
    """Pretrain a method (resuming an interrupted run); reuses a finished checkpoint of the same config.

    Under ``torchrun`` every process trains its slice of each global batch (DDP); see the README."""
    from echobench.distributed import launched, shutdown
    from echobench.runner import pretrain_only

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
    size: Annotated[int, typer.Option(help="Working frame size in pixels (the methods' method.size)")] = 112,
    workers: Annotated[int, typer.Option(help="Decoding processes (default: CPU cores)")] = os.cpu_count() or 1,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Leave unreadable videos out (recorded in the cache) instead of failing")
    ] = False,
) -> None:
    """Decode every video into the decode cache with parallel workers; an interrupted prepare resumes."""
    from rich.markup import escape

    from echobench import registry
    from echobench.data.decode_cache import DecodeCache

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


def _metrics_table(summary: dict[str, Any]) -> Table:
    title = f"{summary['method']} · {summary['protocol']} · {summary['task']} · {summary['dataset']}"
    table = Table(title=title)
    for column in ("metric", "test", "95% CI", "val"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for name, value in summary["metrics"].items():
        low_high = summary["ci95"].get(name)
        ci = f"[{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else ""
        val = summary["val_metrics"].get(name)
        table.add_row(name, _fmt(value), ci, _fmt(val) if val is not None else "")
    chosen = ", ".join(f"{k}={v}" for k, v in summary["chosen"].items() if "@" not in k)
    table.caption = f"chosen on validation: {chosen or '-'}; checkpoint {summary['checkpoint_hash']}"
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
            text = _fmt(value) if isinstance(value, float) else str(value)
            cells.append(f"{text} ± {_fmt(sd)}" if isinstance(sd, float) and math.isfinite(sd) else text)
        table.add_row(*cells)
    table.caption = f"checkpoint {summary['checkpoint_hash']}; per-row values in the result JSON"
    return table


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def main() -> None:
    """Console entry point: user mistakes are one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        console.print("interrupted; caches and checkpoints are consistent, run the same command again to resume")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
