"""Protocol families: each maps a YAML spec's ``family`` to its config dataclass and its runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from echobench.config import did_you_mean
from echobench.errors import UserError


@dataclass(frozen=True)
class Family:
    config_from_dict: Callable[[dict[str, Any]], Any]
    run: Callable[[Any], Any]
    frozen: bool


def get_family(name: str) -> Family:
    from echobench.protocols import frozen

    families = {
        "knn": Family(frozen.knn_config, frozen.run_knn_family, frozen=True),
        "probe": Family(frozen.probe_config, frozen.run_probe_family, frozen=True),
    }
    if name not in families:
        raise UserError(f"unknown protocol family {name!r}{did_you_mean(name, families)}; known: {', '.join(families)}")
    return families[name]
