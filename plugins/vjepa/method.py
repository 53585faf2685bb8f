"""V-JEPA with the 3-D localisation auxiliary loss (Ellis et al., seed 003), as specified in METHODS.md.

A context encoder sees the visible tokens of multiblock masks; a narrow predictor fills the masked positions
(mask tokens + 3-D sincos positions) and regresses the layer-normalised outputs of an EMA target encoder run on
the full clip (Eq. 1). An MLP on pairs of predicted embeddings regresses the pairs' normalised 3-D offsets
(Eqs. 2–3). The loss is ``λ·L_jepa + (1 − λ)·L_ll`` (Eq. 4).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from echobench.api import ClipBatch, Embedding, LossOutput, Method, MethodConfig, TrainState
from echobench.errors import UserError
from echobench.models.decoder import MAEDecoder
from echobench.models.distill import ema_update_, linear_schedule
from echobench.models.masking import gather_by_index, gather_tokens, multiblock_mask
from echobench.models.vit import PRESETS, VideoViT
from echobench_plugins.vjepa.losses import (
    combined_loss,
    jepa_loss,
    localisation_loss,
    localisation_targets,
    sample_pairs,
)


@dataclass
class VJEPAConfig(MethodConfig):
    """V-JEPA + 3-D localisation; defaults are the paper's (ViT-L/16, 16 frames at step 4, 224²) and V-JEPA's code.

    Masks *(code)*: each ``(mask_scales[i], mask_counts[i])`` pair is its own mask generator, as V-JEPA's code
    treats its 8 × 0.15 (short-range) and 2 × 0.7 (long-range) configs: one ``multiblock_mask`` call per pair,
    each with its own context, prediction, L_jepa and L_ll; both losses are averaged over the generators. Blocks
    span all t'; aspect ratio in ``mask_aspect``.

    Predictor *(code)*: ``predictor_depth`` 12, width 384 for ViT-L (``predictor_dim`` unset: min(384, encoder
    width / 2), so smaller encoders get a narrower predictor, not in the paper), as many heads as the encoder. One
    learned mask token is shared by both generators (not in the paper; V-JEPA's code learns one per generator).

    EMA *(code)*: momentum linear from ``ema_start`` to ``ema_end`` over training progress. Frozen blocks
    (``freeze_blocks``, the paper's "12b"/"16b"; the patch embedding freezes with them) are left out of the EMA,
    so the target encoder's copies stay as they started. Downstream features come from the target encoder, as
    V-JEPA's evaluations load ``target_encoder``.

    Localisation: ``pairs`` 100 per sample (paper); pairs drawn uniformly with replacement with ``m1 ≠ m2`` (not
    in the paper); the MLP is 3 linear layers with GELU between them and ``localisation_hidden`` units (not in the
    paper: default the encoder width). ``lambda_ll`` is the λ of Eq. 4, which weights L_jepa: 0.25 (paper's
    best), 1.0 = plain V-JEPA (no localisation head), 0.0 = localisation only.
    """

    model: str = "vit_large"
    frames: int = 16
    stride: int = 4
    size: int = 224
    mask_scales: tuple[float, ...] = (0.15, 0.7)
    mask_counts: tuple[int, ...] = (8, 2)
    mask_aspect: tuple[float, float] = (0.75, 1.5)
    predictor_dim: int | None = None
    predictor_depth: int = 12
    predictor_heads: int | None = None
    ema_start: float = 0.998
    ema_end: float = 1.0
    lambda_ll: float = 0.25
    pairs: int = 100
    localisation_hidden: int | None = None
    freeze_blocks: int = 0


def check_config(config: VJEPAConfig, grid: tuple[int, int, int], depth: int) -> None:
    """Configuration mistakes as one-line ``ValueError``s naming the field (the harness reports them, exit 2)."""
    if not 0.0 <= config.lambda_ll <= 1.0:
        raise ValueError(f"method.lambda_ll must be in [0, 1] (λ of Eq. 4, 1.0 = plain V-JEPA), got {config.lambda_ll}")
    if not 0 <= config.freeze_blocks <= depth:
        raise ValueError(
            f"method.freeze_blocks={config.freeze_blocks} exceeds the {depth}-block encoder of method.model="
            f"{config.model}; use 0 … {depth}"
        )
    if not 0.0 <= config.ema_start <= config.ema_end <= 1.0:
        raise ValueError(
            f"method.ema_start/ema_end must satisfy 0 <= start <= end <= 1, got {config.ema_start}, {config.ema_end}"
        )
    if config.pairs < 1:
        raise ValueError(f"method.pairs must be >= 1, got {config.pairs}")
    if len(config.mask_scales) != len(config.mask_counts) or not config.mask_scales:
        raise ValueError(
            f"method.mask_scales {config.mask_scales} and method.mask_counts {config.mask_counts} must pair up"
        )
    t, h, w = grid
    if config.lambda_ll < 1.0 and (t * h * w < 3 or (t < 2 and int(min(config.mask_scales) * h * w) < 2)):
        raise ValueError(
            f"method.lambda_ll={config.lambda_ll} needs two masked tokens per clip for the localisation pairs, but the "
            f"token grid {grid} can give one; use more frames (method.frames >= 2 x tubelet) or method.lambda_ll=1.0"
        )


class VJEPA(Method):
    name = "vjepa"
    version = "0.1.0"
    Config = VJEPAConfig
    # Paper: AdamW, batch 4, 300 epochs with 20 warm-up, cosine lr 2e-4 → 1e-6; V-JEPA's code: wd 0.04 → 0.4,
    # betas (0.9, 0.999), gradient clipping at 10.
    pretrain_defaults: ClassVar[dict[str, Any]] = {
        "lr": 2e-4,
        "lr_scaling": "none",
        "min_lr_ratio": 1e-6 / 2e-4,
        "warmup_fraction": 20 / 300,
        "batch_size": 4,
        "weight_decay": 0.04,
        "weight_decay_end": 0.4,
        "betas": (0.9, 0.999),
        "grad_clip": 10.0,
    }

    def __init__(self, config: VJEPAConfig) -> None:
        super().__init__(config)
        self.context_encoder = VideoViT.from_config(config, pos="sincos_3d")
        encoder = self.context_encoder
        check_config(config, encoder.grid, len(encoder.blocks))
        # The target encoder is the downstream encoder (the harness's ``encoder``); it starts as the context
        # encoder and then only follows it by EMA.
        self.encoder = copy.deepcopy(encoder)
        self.encoder.requires_grad_(False)
        if config.freeze_blocks:
            encoder.freeze_first(config.freeze_blocks)
        dim = encoder.embed_dim
        heads = config.predictor_heads or PRESETS[config.model][2]
        self.predictor = MAEDecoder(
            encoder_dim=dim,
            decoder_dim=config.predictor_dim or min(384, dim // 2),
            depth=config.predictor_depth,
            num_heads=heads,
            num_patches=encoder.num_patches,
            out_dim=dim,
            pos="sincos_3d",
            grid=encoder.grid,
        )
        self.localiser: nn.Sequential | None = None
        if config.lambda_ll < 1.0:
            hidden = config.localisation_hidden or dim
            self.localiser = nn.Sequential(
                nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 3)
            )

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        cfg = self.config
        clips = batch.clips
        grid = self.context_encoder.grid
        # The harness seeds the global RNG per step; deriving the mask generator from it keeps resume exact.
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        with torch.no_grad():
            targets = self.encoder(clips)
        jepa_terms, ll_terms = [], []
        for scale, count in zip(cfg.mask_scales, cfg.mask_counts, strict=True):
            mask = multiblock_mask(
                clips.shape[0], grid, generator, (scale,), (count,), tuple(cfg.mask_aspect), device=clips.device
            )
            prediction = self.predictor(self.context_encoder(clips, mask=mask), mask)
            jepa_terms.append(jepa_loss(prediction, gather_tokens(targets, mask, keep=True)))
            if self.localiser is not None:
                ll_terms.append(self._localisation(prediction, mask, generator, scale))
        loss_jepa = torch.stack(jepa_terms).mean()
        terms = {"jepa": float(loss_jepa.detach())}
        if not ll_terms:
            return LossOutput(loss=loss_jepa, terms=terms)
        loss_ll = torch.stack(ll_terms).mean()
        terms["localisation"] = float(loss_ll.detach())
        return LossOutput(loss=combined_loss(loss_jepa, loss_ll, cfg.lambda_ll), terms=terms)

    def _localisation(
        self, prediction: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, scale: float
    ) -> torch.Tensor:
        """L_ll (Eq. 3) of ``pairs`` random pairs of one generator's predicted tokens ``(B, n, D)``."""
        assert self.localiser is not None
        batch, num_masked = prediction.shape[:2]
        if num_masked < 2:
            raise UserError(
                f"method.lambda_ll={self.config.lambda_ll}: the mask of scale {scale} predicts {num_masked} token per "
                "clip and the localisation pairs need two; use a larger token grid (method.frames, method.size) or "
                "method.lambda_ll=1.0"
            )
        first, second = (p.to(prediction.device) for p in sample_pairs(batch, num_masked, self.config.pairs, generator))
        # Row-major nonzero lists each row's masked tokens in t-major order, the predictor's output order.
        masked_index = mask.nonzero()[:, 1].reshape(batch, num_masked)
        grid = self.context_encoder.grid
        delta = localisation_targets(masked_index.gather(1, first), masked_index.gather(1, second), grid)
        pairs = torch.cat([gather_by_index(prediction, first), gather_by_index(prediction, second)], dim=-1)
        return localisation_loss(self.localiser(pairs), delta)

    def ema_momentum(self, state: TrainState) -> float:
        """Target-encoder momentum after the step ``state``: ``ema_start`` at step 0, ``ema_end`` at the end."""
        return linear_schedule(self.config.ema_start, self.config.ema_end, state.progress)

    @torch.no_grad()
    def after_step(self, state: TrainState) -> None:
        momentum = self.ema_momentum(state)
        k = self.config.freeze_blocks
        if k == 0:
            ema_update_(self.encoder, self.context_encoder, momentum)
            return
        # freeze_first froze the patch embedding and the first k blocks (sincos_3d has no learned position and
        # there is no CLS token): averaging m·x + (1 − m)·x would still move them by rounding, so skip them.
        for teacher, student in zip(self.encoder.blocks[k:], self.context_encoder.blocks[k:], strict=True):
            ema_update_(teacher, student, momentum)
        ema_update_(self.encoder.norm, self.context_encoder.norm, momentum)

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)

    def map_init_weights(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Public V-JEPA checkpoints (``{"encoder", "target_encoder", "predictor", "opt", …}``, DDP-wrapped
        ``module.backbone.`` names) → this method's names; anything else is taken as echobench's own layout."""
        if not any(_VJEPA_KEY.match(key) for key in state):
            return super().map_init_weights(state)
        return map_vjepa_checkpoint(state, self.state_dict(), self.config.in_chans)


_VJEPA_KEY = re.compile(r"^(encoder|target_encoder|predictor)\.(module\.)?backbone\.|^target_encoder\.")
_PREDICTOR_NAMES = (
    ("predictor_embed.", "embed."),
    ("predictor_blocks.", "blocks."),
    ("predictor_norm.", "norm."),
    ("predictor_proj.", "head."),
)


def _strip_wrappers(key: str) -> str:
    return key.removeprefix("module.").removeprefix("backbone.")


def _encoder_name(name: str) -> str | None:
    """A V-JEPA VisionTransformer parameter name → VideoViT's (None: not stored by VideoViT)."""
    if name == "pos_embed":
        return None  # a fixed sincos table, rebuilt from the config (non-persistent buffer)
    return "patch_embed." + name.removeprefix("patch_embed.proj.") if name.startswith("patch_embed.proj.") else name


def _predictor_name(name: str) -> str | None:
    """A V-JEPA predictor parameter name → MAEDecoder's (None: dropped)."""
    if name == "mask_tokens.0":
        return "mask_token"  # the short-range generator's token; echobench shares one token (see the Config)
    for theirs, ours in _PREDICTOR_NAMES:
        if name.startswith(theirs):
            return ours + name.removeprefix(theirs)
    return None  # further mask tokens, the fixed predictor_pos_embed


def map_vjepa_checkpoint(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], in_chans: int
) -> dict[str, torch.Tensor]:
    """Rename a flattened V-JEPA checkpoint to the VJEPA method's ``state_dict`` names.

    ``encoder`` → ``context_encoder``, ``target_encoder`` → ``encoder`` (the downstream target encoder), the
    predictor to the ``MAEDecoder``; a file holding only one encoder starts both from it (V-JEPA's own start:
    the target is a copy). RGB patch-embedding kernels are summed over colour for grey input (``in_chans`` 1),
    which equals feeding the grey frame as three equal channels (not in the paper). Optimiser state and
    anything else are dropped. A file that leaves an encoder tensor unset is not this architecture: UserError.
    """
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        part, _, rest = key.partition(".")
        name = _strip_wrappers(rest)
        if part in ("encoder", "target_encoder"):
            ours = _encoder_name(name)
            prefix = "context_encoder." if part == "encoder" else "encoder."
        elif part == "predictor":
            ours, prefix = _predictor_name(name), "predictor."
        else:
            continue
        if ours is None:
            continue
        if ours == "patch_embed.weight" and in_chans == 1 and tensor.ndim == 5 and tensor.shape[1] == 3:
            tensor = tensor.sum(dim=1, keepdim=True)
        mapped[prefix + ours] = tensor
    for source, target in (("context_encoder.", "encoder."), ("encoder.", "context_encoder.")):
        if not any(k.startswith(target) for k in mapped):
            mapped |= {target + k.removeprefix(source): v for k, v in mapped.items() if k.startswith(source)}
    missing = [k for k in own if k.startswith(("context_encoder.", "encoder.")) and k not in mapped]
    if missing:
        raise UserError(
            f"pretrain.init_from: the V-JEPA checkpoint has no tensor for {len(missing)} encoder weights such as "
            f"{missing[0]!r}; it was saved from another architecture, so set method.model/patch/tubelet to match it"
        )
    return mapped


@dataclass
class VJEPAPlainConfig(VJEPAConfig):
    """Plain V-JEPA: :class:`VJEPAConfig` with ``lambda_ll`` = 1 (no localisation head, L = L_jepa)."""

    lambda_ll: float = 1.0


class VJEPAPlain(VJEPA):
    """V-JEPA without the localisation loss, the paper's baseline."""

    name = "vjepa_plain"
    Config = VJEPAPlainConfig
