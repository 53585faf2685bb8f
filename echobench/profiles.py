"""Run profiles: named sets of overrides applied before ``--set``.

``quick`` (the default) is sized so that a cold ``echobench run`` finishes in minutes on 2 CPU cores: a ViT-T at
64² on 16-frame clips and a few hundred pretraining steps. ``paper`` applies nothing: each method's paper defaults.
The profile is part of every config hash and result file, so quick and paper numbers are never confused.
"""

from __future__ import annotations

from typing import Any

from echobench.config import did_you_mean
from echobench.errors import UserError

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "method": {"model": "vit_tiny", "frames": 16, "stride": 4, "size": 64, "patch": 8, "tubelet": 4},
        "pretrain": {"steps": 300, "batch_size": 8, "lr": 1e-3, "lr_scaling": "none", "checkpoint_every": 100},
    },
    "paper": {},
}


def profile_overrides(name: str) -> dict[str, dict[str, Any]]:
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}{did_you_mean(name, PROFILES)}; available: {', '.join(PROFILES)}")
    return PROFILES[name]
