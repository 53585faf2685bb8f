"""How long a training run is: epochs turned into optimiser steps from the size of the set it trains on.

Every paper gives its training length in epochs (DISCOVER 400, EchoCardMAE 1,600, V-JEPA + 3D localisation 300);
the loop counts optimiser steps. An epoch is one pass of the loader over the videos trained on, in full global
batches (:class:`echobench.data.loader.StepBatches` drops the last partial batch), so

    steps_per_epoch = num_videos // batch_size,   steps = round(epochs × steps_per_epoch),
    warmup_steps    = round(warmup_epochs × steps_per_epoch)  (or int(warmup_fraction × steps)).

A run given in steps keeps its steps; its epochs are then ``steps / steps_per_epoch``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from echobench.config import PretrainConfig


@dataclass(frozen=True)
class RunLength:
    """A training run's length in both units, and what it was derived from."""

    steps: int
    steps_per_epoch: int
    warmup_steps: int
    num_videos: int
    batch_size: int
    in_epochs: bool

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def warmup_epochs(self) -> float:
        return self.warmup_steps / self.steps_per_epoch

    def record(self) -> dict[str, Any]:
        """The fields every checkpoint and result records."""
        return {
            "epochs": round(self.epochs, 6),
            "steps": self.steps,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_steps": self.warmup_steps,
            "warmup_epochs": round(self.warmup_epochs, 6),
            "num_videos": self.num_videos,
            "batch_size": self.batch_size,
            "unit": "epochs" if self.in_epochs else "steps",
        }


def steps_per_epoch(num_videos: int, batch_size: int) -> int:
    """Full global batches in one pass over ``num_videos`` videos (at least 1: a set smaller than one batch is
    refused by the loader when training starts, after the dataset's other checks)."""
    return max(1, num_videos // batch_size)


def warmup_steps(config: PretrainConfig, per_epoch: int) -> int:
    """Warm-up steps: ``round(warmup_epochs × steps_per_epoch)`` when given in epochs, else
    ``int(warmup_fraction × steps)``; never more than the run."""
    if config.warmup_epochs is not None:
        return min(config.steps, round(config.warmup_epochs * per_epoch))
    return int(config.warmup_fraction * config.steps)


def sized(config: PretrainConfig, num_videos: int) -> PretrainConfig:
    """``config`` with ``steps`` derived from ``epochs`` for a pretraining set of ``num_videos`` videos (unchanged
    when the run is given in steps). Idempotent."""
    if config.epochs is None:
        return config
    steps = max(1, round(config.epochs * steps_per_epoch(num_videos, config.batch_size)))
    return dataclasses.replace(config, steps=steps)


def run_length(config: PretrainConfig, num_videos: int) -> RunLength:
    """The length of ``config`` (sized or not) on a pretraining set of ``num_videos`` videos."""
    per_epoch = steps_per_epoch(num_videos, config.batch_size)
    config = sized(config, num_videos)
    return RunLength(
        steps=config.steps,
        steps_per_epoch=per_epoch,
        warmup_steps=warmup_steps(config, per_epoch),
        num_videos=num_videos,
        batch_size=config.batch_size,
        in_epochs=config.epochs is not None,
    )
