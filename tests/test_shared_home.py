"""Several ``echobench`` processes sharing one ``$ECHOBENCH_HOME``: locks make the loser of every race wait for and
reuse the winner's output; a run stopped by a signal does not stay RUNNING in MLflow."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cli_run import KNN, TINY

#: The real CLI with the default SynthEcho shrunk to the test suite's size (40 videos of 24 frames).
ENTRY = (
    "import sys; import echobench.data.synthecho as synthecho; "
    "synthecho.DEFAULT_VIDEOS, synthecho.DEFAULT_FRAMES = 40, 24; "
    "from echobench.cli import main; sys.argv[0] = 'echobench'; main()"
)


def _start(home: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ECHOBENCH_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _runs(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "mlflow" / "mlflow.db") as db:
        return db.execute("select name, status from runs order by name").fetchall()


def test_four_runs_started_together_on_an_empty_home(isolated_home):
    argv = ["run", "--method", "random_init", "--protocol", "knn", "--json", *TINY, *KNN]
    processes = [_start(isolated_home, *argv) for _ in range(4)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    summaries = [json.loads(out) for out, _ in outputs]
    assert all(s["metrics"] == summaries[0]["metrics"] and s["metrics"] for s in summaries)
    # A process that starts after another has written the (identical) result reuses it instead of evaluating again;
    # each process that evaluated has its own finished MLflow run (checked below).
    evaluated = [s for s in summaries if not s["reused"]]
    assert evaluated

    visible = [p.name for p in (isolated_home / "data").iterdir() if not p.name.endswith(".lock")]
    assert visible == ["synthecho"]
    decoded = [p.name for p in (isolated_home / "decoded").iterdir() if not p.name.endswith(".lock")]
    assert len(decoded) == 1 and decoded[0].startswith("synthecho-")
    with sqlite3.connect(isolated_home / "mlflow" / "mlflow.db") as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
    assert not [t for t in tables if t.startswith("_alembic_tmp")]
    assert [status for _, status in _runs(isolated_home)] == ["FINISHED"] * len(evaluated)


def test_sigterm_marks_the_mlflow_run_killed(isolated_home):
    argv = ["pretrain", "--method", "videomae", *TINY, "--set", "pretrain.steps=100000"]
    process = _start(isolated_home, *argv)
    database = isolated_home / "mlflow" / "mlflow.db"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if database.is_file() and ("videomae-synthecho", "RUNNING") in _safe_runs(isolated_home):
            break
        time.sleep(0.5)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "terminated by signal" in err and "Traceback" not in err
    assert _runs(isolated_home) == [("videomae-synthecho", "KILLED")]


def _safe_runs(home: Path) -> list[tuple[str, str]]:
    try:
        return _runs(home)
    except sqlite3.Error:
        return []
