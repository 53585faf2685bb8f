"""SynthEcho: the built-in procedural echo dataset, written in (and read back through) the EchoNet-Dynamic format.

Commands that name no dataset use the copy at ``$ECHOBENCH_HOME/data/synthecho``: whatever ``echobench data synth``
last wrote there, or the default size generated on first use.
"""

from __future__ import annotations

from pathlib import Path

from echobench.data.echonet import EchoNetDynamic
from echobench.data.synthecho.generate import (
    DEFAULT_FRAMES,
    DEFAULT_VIDEOS,
    SYNTHECHO_VERSION,
    check_split_rule,
    synthesize,
)
from echobench.data.synthecho.writer import read_manifest
from echobench.locks import exclusive
from echobench.paths import data_dir

__all__ = ["SynthEchoDataset", "default_root", "synthesize", "synthesize_cli"]


def default_root() -> Path:
    return data_dir() / "synthecho"


class SynthEchoDataset(EchoNetDynamic):
    name = "synthecho"
    version = SYNTHECHO_VERSION

    @classmethod
    def default(cls) -> SynthEchoDataset:
        """The cached copy, generated with the default size on first use or when the generator's version changed."""
        root = default_root()
        if not _is_current(root):
            with exclusive(root, "generating SynthEcho"):
                if not _is_current(root):
                    synthesize(root, videos=DEFAULT_VIDEOS, seed=0, frames=DEFAULT_FRAMES)
        return cls(root)


def _is_current(root: Path) -> bool:
    manifest = read_manifest(root)
    return manifest is not None and str(manifest.get("version")) == SYNTHECHO_VERSION


def synthesize_cli(out: Path | None, videos: int | None, seed: int, frames: int | None) -> Path:
    """``echobench data synth``: without ``--out`` the result replaces the default copy every command uses."""
    target = out if out is not None else default_root()
    videos = DEFAULT_VIDEOS if videos is None else videos
    frames = DEFAULT_FRAMES if frames is None else frames
    check_split_rule(videos, seed, frames)
    with exclusive(target, "generating SynthEcho"):
        return synthesize(target, videos=videos, seed=seed, frames=frames)
