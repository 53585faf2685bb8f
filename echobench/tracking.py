"""MLflow tracking: one run per pretraining and one per evaluation.

By default runs go to a SQLite store and a local artifact folder under ``$ECHOBENCH_HOME/mlflow`` (MLflow 3's
default would scatter ``mlflow.db`` into whatever directory the user runs from); ``MLFLOW_TRACKING_URI`` wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echobench.errors import Terminated, UserError
from echobench.locks import exclusive
from echobench.paths import echobench_home, results_dir

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


class Store:
    """The tracking store behind an MLflow client.

    With the default SQLite store every call holds the store's inter-process lock: MLflow's first-time schema
    set-up is not safe against a second process doing the same (it leaves ``_alembic_tmp_*`` tables behind and
    every later run fails), and SQLite allows one writer at a time anyway. Store failures become one-line
    :class:`UserError` messages naming the store.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        self._client: Any = None

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<name>(*args, **kwargs)`` under the store lock, with failures as UserError."""
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        lock = exclusive(self.database, "using the MLflow store") if self.database else contextlib.nullcontext()
        try:
            with lock:
                if self._client is None:
                    from mlflow.tracking import MlflowClient

                    self._client = MlflowClient(tracking_uri=self.uri)
                return getattr(self._client, name)(*args, **kwargs)
        except (MlflowException, SQLAlchemyError, sqlite3.Error) as exc:
            raise UserError(self._failure(exc)) from None

    def _failure(self, exc: BaseException) -> str:
        # SQLAlchemy appends the failing statement and a documentation link; the first clause says what failed.
        detail = re.split(r"\s*\[SQL:|\s*\(Background on", " ".join(str(exc).split()))[0][:200] or type(exc).__name__
        fix = (
            f"if it is damaged, move {self.database} aside (results stay in {results_dir()}) and rerun"
            if self.database
            else "check that the tracking server is reachable, or unset MLFLOW_TRACKING_URI"
        )
        return f"MLflow store {self.uri} failed ({detail}); {fix}"


class Run:
    """A thin handle over an active MLflow run (metrics are batched into one request per call)."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        batch = [Metric(key=_metric_key(k), value=float(v), timestamp=now, step=step or 0) for k, v in metrics.items()]
        self.store.call("log_batch", self.run_id, metrics=batch)

    def log_artifact(self, path: Path) -> None:
        self.store.call("log_artifact", self.run_id, str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.store.call("set_tag", self.run_id, key, value)


def _metric_key(name: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / only; protocol metric names such as "val_mae@k=10" do not fit.
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


@contextlib.contextmanager
def start_run(experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[Run]:
    """Open an MLflow run; it ends KILLED if a signal stops the block, FAILED if the block raises."""
    from mlflow.entities import Param

    # MLflow configures its loggers on import; database set-up chatter would otherwise reach the user's terminal.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    store = Store(tracking_uri())
    if store.database is not None:
        store.database.parent.mkdir(parents=True, exist_ok=True)
    found = store.call("get_experiment_by_name", experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = None if os.environ.get("MLFLOW_TRACKING_URI") else (artifact_root() / experiment).as_uri()
        experiment_id = _create_experiment(store, experiment, location)
    mlflow_run = store.call("create_run", experiment_id, run_name=run_name, tags=tags)
    run = Run(store, mlflow_run.info.run_id)
    items = [Param(k, v) for k, v in flatten("", params).items()]
    for start in range(0, len(items), 100):
        store.call("log_batch", run.run_id, params=items[start : start + 100])
    try:
        yield run
    except (KeyboardInterrupt, Terminated):
        store.call("set_terminated", run.run_id, status="KILLED")
        raise
    except BaseException:
        store.call("set_terminated", run.run_id, status="FAILED")
        raise
    store.call("set_terminated", run.run_id, status="FINISHED")


def _create_experiment(store: Store, name: str, location: str | None) -> str:
    """Create experiment ``name``, or return its id when another process created it first (a remote store)."""
    try:
        return store.call("create_experiment", name, artifact_location=location)
    except UserError:
        found = store.call("get_experiment_by_name", name)
        if found is None:
            raise
        return found.experiment_id
