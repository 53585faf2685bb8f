"""Protocol families: each maps a YAML spec's ``family`` to its config dataclass and its runner.

``frozen`` families read the embedding cache; ``trains`` families fit something whose result depends on a seed,
so ``--seeds N`` repeats them; ``check`` (optional) validates the config against the dataset before any
pretraining or training starts; ``task_kinds`` are the task kinds it evaluates (``None``: a wrapper, whose inner
protocol decides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from echobench.config import did_you_mean
from echobench.data.tasks import Task
from echobench.errors import UserError


@dataclass(frozen=True)
class Family:
    config_from_dict: Callable[[dict[str, Any]], Any]
    run: Callable[[Any], Any]
    frozen: bool
    trains: bool = True
    check: Callable[[Any, Any, Any], None] | None = None
    task_kinds: tuple[str, ...] | None = ("classification", "regression")


def families() -> dict[str, Family]:
    from echobench.protocols import finetune, frozen, segmentation, token_heads, wrappers

    return {
        "knn": Family(frozen.knn_config, frozen.run_knn_family, frozen=True, trains=False),
        "probe": Family(frozen.probe_config, frozen.run_probe_family, frozen=True),
        "tokens": Family(token_heads.TokenHeadConfig.from_dict, token_heads.run_token_head_family, frozen=True),
        "clip_variance": Family(frozen.clip_variance_config, frozen.run_clip_variance_family, frozen=True),
        "finetune": Family(finetune.FinetuneConfig.from_dict, finetune.run_finetune_family, frozen=False),
        "label_sweep": Family(
            wrappers.SweepConfig.from_dict, wrappers.run_sweep_family, frozen=False, trains=False, task_kinds=None
        ),
        "kfold": Family(
            wrappers.KfoldConfig.from_dict,
            wrappers.run_kfold_family,
            frozen=False,
            check=wrappers.check_kfold,
            task_kinds=None,
        ),
        "segmentation": Family(
            segmentation.SegmentationConfig.from_dict,
            segmentation.run_segmentation_family,
            frozen=True,
            task_kinds=("segmentation",),
        ),
    }


def get_family(name: str) -> Family:
    known = families()
    if name not in known:
        raise UserError(f"unknown protocol family {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
    return known[name]


def check_task(protocol: str, family: Family, config: Any, task: Task) -> None:
    """A :class:`UserError` unless the protocol (a wrapper's inner protocol) evaluates tasks of ``task.kind``."""
    if family.task_kinds is None:
        inner_family, inner_config = config.resolve()
        check_task(config.inner, inner_family, inner_config, task)
        return
    if task.kind in family.task_kinds:
        return
    if task.kind == "segmentation":
        raise UserError(f"task {task.name} is a segmentation task; use --protocol segmentation")
    if "segmentation" in family.task_kinds:
        raise UserError(
            f"protocol {protocol} segments images, but task {task.name} is a {task.kind} task; use --task lv_seg"
        )
    raise UserError(f"protocol {protocol} does not evaluate {task.kind} tasks like {task.name}; choose another task")
