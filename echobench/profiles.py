"""Run profiles: named sets of overrides applied before ``--set``.

``quick`` (the default) is sized so that a cold ``echobench run --method discover --protocol knn`` (SynthEcho
generation, decoding, pretraining, encoding) finishes within about 3 minutes on 2 CPU cores: a ViT-T at 64² on
16-frame clips, batch 8, 100 pretraining steps, fp32 (on CPUs without bf16 matrix units bf16 is emulated and
slower; ``pretrain.amp=auto`` decides). Plugins may add their own quick settings (``Method.profile_overrides``).
It is a CPU-sized stand-in and never any paper's setting.

``paper`` is each method's paper recipe: the plugin's defaults (its Config and ``pretrain_defaults``: geometry,
epochs, warm-up epochs, batch, lr and lr-scaling rule, optimiser, schedules, EMA ramps) and its own ``paper``
settings (``Method.profile_overrides["paper"]``). Training length is in epochs, turned into steps from the
pretraining set's size (:mod:`echobench.run_length`), and fine-tuning protocols train for epochs too. A baseline
runs at the geometry and recipe of the seed paper that compares against it (:data:`DISCOVER_BASELINE_METHOD`).
The profile is part of every config hash and result file, so quick and paper numbers are never confused.
"""

from __future__ import annotations

from typing import Any

from echobench.config import did_you_mean
from echobench.errors import UserError

#: DISCOVER's baselines (VideoMAE, SIGMA, MGMAE, image DINO), paper 004 Sec. 4 "Evaluation": "64-frame clips at a
#: stride of 3", 2×16×16 tubes, 90 % masking (each MAE plugin's ``mask_ratio`` default), "a ViT base backbone";
#: 112² (Appendix C).
DISCOVER_BASELINE_METHOD: dict[str, Any] = {
    "model": "vit_base",
    "frames": 64,
    "stride": 3,
    "size": 112,
    "patch": 16,
    "tubelet": 2,
}
#: DISCOVER's own recipe (its plugin's ``pretrain_defaults``) and that of its comparison. Appendix C: "All models
#: ... with a batch size of 8 using the AdamW optimizer"; "trained for 400 epochs with a
#: learning rate of 1.5e-4, weight decay of 0.05, and 40 warmup epochs". Not in the paper: that the 400 epochs,
#: the lr (unscaled) and the warm-up cover the baselines too — the paper states them for its models without
#: naming the baselines; echobench applies them to every model of the comparison.
DISCOVER_BASELINE_PRETRAIN: dict[str, Any] = {
    "epochs": 400,
    "warmup_epochs": 40,
    "batch_size": 8,
    "lr": 1.5e-4,
    "lr_scaling": "none",
    "weight_decay": 0.05,
}
#: Where the DISCOVER comparison's values come from (``Method.sources`` of its baselines).
DISCOVER_BASELINE_SOURCES: dict[str, str] = {
    "method.model": "paper 004 Sec. 4 Evaluation: baselines on 'a ViT base backbone'",
    "method.frames": "paper 004 Sec. 4 Evaluation: '64-frame clips'",
    "method.stride": "paper 004 Sec. 4 Evaluation: 'at a stride of 3'",
    "method.size": "paper 004 Appendix C: 112x112",
    "method.tubelet": "paper 004 Sec. 4 Evaluation: 2x16x16 tubes",
    "method.mask_ratio": "paper 004 Sec. 4 Evaluation: 90 % masking",
    "pretrain.batch_size": "paper 004 Appendix C: 'All models ... batch size of 8'",
    "pretrain.epochs": "choice: DISCOVER's 400 epochs (Appendix C) read as covering its baselines",
    "pretrain.warmup_epochs": "choice: DISCOVER's 40 warm-up epochs read as covering its baselines",
    "pretrain.lr": "choice: DISCOVER's lr 1.5e-4 read as covering its baselines",
    "pretrain.lr_scaling": "choice: DISCOVER's lr is given without a batch rule",
}
#: Fine-tuning length under the paper profile: EchoVisionFM's 50 epochs (paper 002, Appendix "Echonet-Dynamic"),
#: the only seed paper that gives one; validation once per epoch (not in the papers). Under ``quick``, steps.
PAPER_FINETUNE: dict[str, Any] = {"epochs": 50, "eval_every_epochs": 1}

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "method": {"model": "vit_tiny", "frames": 16, "stride": 4, "size": 64, "patch": 8, "tubelet": 4},
        "pretrain": {"steps": 100, "batch_size": 8, "lr": 1e-3, "lr_scaling": "none", "checkpoint_every": 50},
        # By protocol family. The papers' fine-tuning recipe (lr 1e-4, layer decay 0.75) is made for a ViT-B
        # pretrained for hundreds of epochs; the quick encoder was trained for 100 steps at lr 1e-3, or not at all,
        # and under that recipe its early blocks barely move (validation R² on SynthEcho ef: README, quick profile).
        "protocols": {"finetune": {"lr": 1e-3, "layer_decay": 1.0}},
    },
    "paper": {"protocols": {"finetune": PAPER_FINETUNE}},
}


def family_overrides(name: str, family: str) -> dict[str, Any]:
    """The profile's settings for protocols of ``family``, applied over the protocol's own and under ``--set``."""
    return dict(profile_overrides(name).get("protocols", {}).get(family, {}))


def profile_overrides(name: str) -> dict[str, Any]:
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}{did_you_mean(name, PROFILES)}; available: {', '.join(PROFILES)}")
    return PROFILES[name]
