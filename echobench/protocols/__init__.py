"""Protocol families: each maps a YAML spec's ``family`` to its config dataclass and its runner. Families are
entry points of the ``echobench.protocols`` group (the built-in ones in :mod:`echobench.protocols.families`).

``frozen`` families read the embedding cache; ``trains`` families fit something whose result depends on a seed,
so ``--seeds N`` repeats them; ``check`` (optional) validates the config against the dataset before any
pretraining or training starts; ``task_kinds`` are the task kinds it evaluates (``None``: a wrapper, whose inner
protocol decides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def get_family(name: str) -> Family:
    """The family registered as ``name`` in the ``echobench.protocols`` entry-point group."""
    from echobench import registry

    family = registry.load(registry.PROTOCOLS_GROUP, name)
    if not isinstance(family, Family):
        raise UserError(f"protocol family {name!r} does not point at an echobench.protocols.Family")
    return family


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
