"""Console output: progress and tables go to stderr so that ``--json`` keeps stdout machine-readable."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress_bar(disable: bool = False) -> Progress:
    """The progress bar every long step uses; tasks may set an ``info`` field (e.g. the current loss). ``disable``
    hides it (every rank of a distributed run but rank 0)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
        disable=disable,
    )
