"""Helpers for tests that run ``echobench tune`` worker processes against one study, and a private PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from cli_run import TINY

#: k-NN search over the softmax temperature only: random_init encodes once, then every trial takes a second or two.
SEARCH = "protocol.temperature: {low: 0.01, high: 0.5, log: true}\n"
KNN = ["--set", "protocol.ks=[1,3]", "--set", "protocol.ci_resamples=0"]


def tune_argv(root: Path, search: Path, storage: str, trials: int, *extra: str) -> list[str]:
    return [
        *("tune", "--method", "random_init", "--protocol", "knn", "--task", "ef", "--trials", str(trials)),
        *("--dataset", "synthecho", "--data-root", str(root), "--search", str(search), "--storage", storage),
        *TINY,
        *KNN,
        *extra,
    ]


def start_worker(argv: list[str], home: Path) -> subprocess.Popen[str]:
    """``python -m echobench ARGV`` with its own ``$ECHOBENCH_HOME`` (as a worker on another machine would have)."""
    env = {**os.environ, "ECHOBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "echobench", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (``initdb``, ``pg_ctl``), if installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a fresh temporary folder on a free local port (trust auth), run as a
    non-root user. The folder lies directly under the system temp dir: pytest's folders are private to root."""

    def __init__(self, bin_dir: Path) -> None:
        self.folder, self.bin = Path(tempfile.mkdtemp(prefix="echobench-pg-")), bin_dir
        self.port = free_port()
        self.data = self.folder / "data"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            # The server refuses to run as root.
            shutil.chown(self.folder, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
