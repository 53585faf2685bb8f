"""Run profiles: named sets of overrides applied before ``--set``.

``quick`` (the default) is sized so that a cold ``echobench run --method discover --protocol knn`` (SynthEcho
generation, decoding, pretraining, encoding) finishes within about 3 minutes on 2 CPU cores: a ViT-T at 64² on
16-frame clips, batch 8, 100 pretraining steps, fp32 (on CPUs without bf16 matrix units bf16 is emulated and
slower; ``pretrain.amp=auto`` decides). Plugins may add their own quick settings (``Method.profile_overrides``).
``paper`` applies nothing: each method's paper defaults.
The profile is part of every config hash and result file, so quick and paper numbers are never confused.
"""

from __future__ import annotations

from typing import Any

from echobench.config import did_you_mean
from echobench.errors import UserError

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "method": {"model": "vit_tiny", "frames": 16, "stride": 4, "size": 64, "patch": 8, "tubelet": 4},
        "pretrain": {"steps": 100, "batch_size": 8, "lr": 1e-3, "lr_scaling": "none", "checkpoint_every": 50},
        # By protocol family. The papers' fine-tuning recipe (lr 1e-4, layer decay 0.75) is made for a ViT-B
        # pretrained for hundreds of epochs; the quick encoder was trained for 100 steps at lr 1e-3, or not at all,
        # and under that recipe its early blocks barely move (validation R² on SynthEcho ef: README, quick profile).
        "protocols": {"finetune": {"lr": 1e-3, "layer_decay": 1.0}},
    },
    "paper": {},
}


def family_overrides(name: str, family: str) -> dict[str, Any]:
    """The profile's settings for protocols of ``family``, applied over the protocol's own and under ``--set``."""
    return dict(profile_overrides(name).get("protocols", {}).get(family, {}))


def profile_overrides(name: str) -> dict[str, Any]:
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}{did_you_mean(name, PROFILES)}; available: {', '.join(PROFILES)}")
    return PROFILES[name]
