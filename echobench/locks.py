"""Inter-process locks for a shared ``$ECHOBENCH_HOME`` (a lab sharing a cache, parallel Optuna workers).

Whatever several processes may create at once (SynthEcho, decode caches, checkpoints, embedding files, the MLflow
store) is built under :func:`exclusive`: the first process builds, the others wait and then find it built. Callers
check again after acquiring the lock (double-checked), so an existing result costs no lock at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from echobench.console import console

#: Seconds to wait silently before telling the user that another process holds the lock.
QUIET_WAIT = 1.0


def lock_path(target: Path) -> Path:
    """The lock file guarding ``target``: hidden, beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive(target: Path, what: str) -> Iterator[None]:
    """Hold the inter-process lock of ``target`` while ``what`` (e.g. "generating SynthEcho") is done."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=QUIET_WAIT)
    except Timeout:
        console.print(f"waiting for another echobench process {what} ({path})", highlight=False, soft_wrap=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
