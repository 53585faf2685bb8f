"""MLflow tracking: one run per pretraining and one per evaluation.

By default runs go to a SQLite store and a local artifact folder under ``$ECHOBENCH_HOME/mlflow`` (MLflow 3's
default would scatter ``mlflow.db`` into whatever directory the user runs from); ``MLFLOW_TRACKING_URI`` wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echobench.paths import echobench_home

MAX_PARAM_LENGTH = 500


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{echobench_home() / 'mlflow' / 'mlflow.db'}"


def artifact_root() -> Path:
    return echobench_home() / "mlflow" / "artifacts"


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested dicts → ``a.b.c`` keys with string values short enough for MLflow params."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: str(value)[:MAX_PARAM_LENGTH]}


class Run:
    """A thin handle over an active MLflow run (metrics are batched into one request per call)."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        batch = [Metric(key=_metric_key(k), value=float(v), timestamp=now, step=step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)


def _metric_key(name: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / only; protocol metric names such as "val_mae@k=10" do not fit.
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


@contextlib.contextmanager
def start_run(experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[Run]:
    """Open an MLflow run; it is marked FAILED if the block raises."""
    from mlflow.tracking import MlflowClient

    # MLflow configures its loggers on import; database set-up chatter would otherwise reach the user's terminal.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = None if os.environ.get("MLFLOW_TRACKING_URI") else (artifact_root() / experiment).as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    mlflow_run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    run = Run(client, mlflow_run.info.run_id)
    from mlflow.entities import Param

    flat = flatten("", params)
    items = [Param(k, v) for k, v in flat.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run.run_id, params=items[start : start + 100])
    try:
        yield run
    except BaseException:
        client.set_terminated(run.run_id, status="FAILED")
        raise
    client.set_terminated(run.run_id, status="FINISHED")
