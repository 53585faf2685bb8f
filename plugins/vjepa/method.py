"""V-JEPA with the 3-D localisation auxiliary loss (Ellis et al., seed 003), as specified in METHODS.md.

A context encoder sees the context tokens of V-JEPA's multiblock masks; a narrow predictor fills the predicted
positions (mask tokens + 3-D sincos positions) and regresses the layer-normalised outputs of an EMA target encoder
run on the full clip (Eq. 1). An MLP on pairs of predicted embeddings regresses the pairs' normalised 3-D offsets
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
from echobench.models.distill import ema_update_, linear_schedule
from echobench.models.masking import check_multiblock, gather_by_index, gather_tokens, multiblock_mask
from echobench.models.pos_embed import sincos_3d
from echobench.models.vit import PRESETS, VideoViT, init_vit_weights, make_blocks
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

    Masks are V-JEPA's collator *(code: facebookresearch/jepa src/masks/multiblock3d.py)*: each
    ``(mask_scales[i], mask_counts[i])`` pair is its own mask generator, as the code's 8 × 0.15 (short-range) and
    2 × 0.7 (long-range) configs (configs/pretrain/vitl16.yaml). Per batch a generator draws one aspect ratio from
    ``mask_aspect``, so all its blocks share one size, and places each block uniformly, spanning all t'. The
    predicted set is the union of a row's blocks, the context its complement; each is trimmed separately to the
    batch's smallest count, keeping a row's first tokens in t-major order, so a trimmed target is neither
    predicted nor seen and the context holds no token of any block. Each generator has its own context,
    prediction, L_jepa and L_ll; both losses are averaged over the generators (code: app/vjepa/train.py
    ``loss_fn``). Not the code's: the blocks come from a generator seeded by the harness's per-step seed (the
    code: size from a generator seeded with the iteration count, positions from the global RNG), and a row whose
    blocks cover its whole frame redraws at most 100 times (the code: without bound).

    Predictor *(code: src/models/predictor.py)*: ``predictor_depth`` 12, width 384 for ViT-L (``predictor_dim``
    unset: min(384, encoder width / 2), so smaller encoders get a narrower predictor, not in the paper or code), as
    many heads as the encoder. It attends over the context and the predicted tokens only; each generator has its
    own zero-initialised mask token, which takes weight decay as the code's (app/vjepa/utils.py ``init_opt``
    decays every non-bias tensor of more than one dimension). Not the code's: Linear layers start xavier-uniform
    as echobench's ViT (the code: truncated normal, std 0.02).

    Target *(code: app/vjepa/train.py ``forward_target``)*: layer norm without affine parameters of the target
    encoder's output (which ends in the encoder's own final norm), detached.

    EMA *(code: app/vjepa/train.py ``momentum_scheduler``; the paper gives no schedule)*: the momentum after the
    0-based step s of T is ``ema_start + (ema_end − ema_start)·s / (ema_ipe_scale·T)``. The code's ``ipe_scale``
    1.25 stretches the ramp past the run, so its last step uses 0.9996, not 1.0; ``ema_ipe_scale=1`` ends at
    ``ema_end``. Frozen blocks (``freeze_blocks``, the paper's "12b"/"16b"; the patch embedding freezes with them)
    are left out of the EMA, so the target encoder's copies stay as they started. Downstream features come from the
    target encoder, as V-JEPA's evaluations load ``target_encoder``.

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
    ema_ipe_scale: float = 1.25
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
    if config.ema_ipe_scale <= 0.0:
        raise ValueError(f"method.ema_ipe_scale must be > 0 (V-JEPA's ipe_scale, 1.25), got {config.ema_ipe_scale}")
    if config.pairs < 1:
        raise ValueError(f"method.pairs must be >= 1, got {config.pairs}")
    if len(config.mask_scales) != len(config.mask_counts) or not config.mask_scales:
        raise ValueError(
            f"method.mask_scales {config.mask_scales} and method.mask_counts {config.mask_counts} must pair up"
        )
    if len(config.mask_aspect) != 2:
        raise ValueError(f"method.mask_aspect must be a (min, max) pair, got {config.mask_aspect}")
    for scale, count in zip(config.mask_scales, config.mask_counts, strict=True):
        try:
            check_multiblock(grid, scale, count, (config.mask_aspect[0], config.mask_aspect[1]))
        except UserError as error:
            raise ValueError(f"method.mask_scales/mask_counts/mask_aspect: {error}") from None
    t, h, w = grid
    if config.lambda_ll < 1.0 and (t * h * w < 3 or (t < 2 and int(min(config.mask_scales) * h * w) < 2)):
        raise ValueError(
            f"method.lambda_ll={config.lambda_ll} needs two masked tokens per clip for the localisation pairs, but the "
            f"token grid {grid} can give one; use more frames (method.frames >= 2 x tubelet) or method.lambda_ll=1.0"
        )


class VJEPAPredictor(nn.Module):
    """V-JEPA's predictor (code: facebookresearch/jepa src/models/predictor.py, ``VisionTransformerPredictor``).

    Context tokens are projected to the predictor width and get their fixed 3-D sincos positions; every predicted
    position gets its generator's mask token plus its position. The transformer runs on these context and
    predicted tokens only (tokens trimmed by the collator are absent), and the predicted ones are normalised and
    projected back to the encoder width. ``mask_tokens`` holds one zero-initialised token per mask generator
    (the code's ``mask_tokens`` with ``zero_init_mask_tokens``).
    """

    pos_fixed: torch.Tensor

    def __init__(
        self, encoder_dim: int, dim: int, depth: int, num_heads: int, grid: tuple[int, int, int], num_mask_tokens: int
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise UserError(f"predictor width {dim} is not divisible by {num_heads} heads; set method.predictor_heads")
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, dim)) for _ in range(num_mask_tokens))
        self.register_buffer("pos_fixed", sincos_3d(grid, dim)[None], persistent=False)
        self.blocks = make_blocks(dim, depth, num_heads, 4.0, 0.0)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, encoder_dim)
        self.apply(init_vit_weights)

    def forward(
        self, context_tokens: torch.Tensor, context: torch.Tensor, predicted: torch.Tensor, mask_index: int
    ) -> torch.Tensor:
        """Predictions ``(B, n_pred, encoder_dim)`` at ``predicted`` ``(B, N)``, in t-major order, from the context
        encoder's tokens ``(B, n_ctx, encoder_dim)`` at ``context`` ``(B, N)``, with mask token ``mask_index``."""
        positions = self.pos_fixed.expand(context.shape[0], -1, -1)
        seen = self.embed(context_tokens) + gather_tokens(positions, context, keep=True)
        queries = self.mask_tokens[mask_index] + gather_tokens(positions, predicted, keep=True)
        tokens = torch.cat([seen, queries.to(seen.dtype)], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens[:, seen.shape[1] :]))


class VJEPA(Method):
    name = "vjepa"
    version = "0.2.0"
    Config = VJEPAConfig
    # Paper: AdamW, batch 4, 300 epochs with 20 warm-up, cosine lr 2e-4 → 1e-6; V-JEPA's code: wd 0.04 → 0.4,
    # betas (0.9, 0.999), gradient clipping at 10. The lr and wd schedules follow the paper's endpoints, not the
    # code's forms (facebookresearch/jepa src/utils/schedulers.py: evaluated at step + 1, warm-up from a start lr,
    # every schedule stretched by ipe_scale 1.25 so it never reaches its end; clipping only after warm-up, encoder
    # and predictor separately); the EMA ramp follows the code (``ema_ipe_scale``).
    pretrain_defaults: ClassVar[dict[str, Any]] = {
        "lr": 2e-4,
        "lr_scaling": "none",
        "min_lr_ratio": 1e-6 / 2e-4,
        "warmup_fraction": 20 / 300,
        "epochs": 300,
        "warmup_epochs": 20,
        "batch_size": 4,
        "weight_decay": 0.04,
        "weight_decay_end": 0.4,
        "betas": (0.9, 0.999),
        "grad_clip": 10.0,
    }

    sources: ClassVar[dict[str, str]] = {
        "pretrain.epochs": "paper: Sec. 3.1 (300 epochs on CAMUS)",
        "pretrain.warmup_epochs": "paper: Sec. 3.1 (20-epoch warm-up)",
        "pretrain.batch_size": "paper: Sec. 3.1 (batch 4)",
        "pretrain.lr": "paper: Sec. 3.1 (cosine 2e-4 to 1e-6)",
        "pretrain.min_lr_ratio": "paper: Sec. 3.1 (final lr 1e-6)",
        "pretrain.weight_decay": "code: facebookresearch/jepa configs (0.04 to 0.4)",
        "pretrain.weight_decay_end": "code: facebookresearch/jepa configs",
        "pretrain.betas": "code: facebookresearch/jepa app/vjepa/utils.py",
        "pretrain.grad_clip": "code: facebookresearch/jepa configs (clip_grad 10)",
        "method.frames": "paper: Sec. 3.1 (16 frames)",
        "method.stride": "paper: Sec. 3.1 (frame step 4)",
        "method.size": "paper: Sec. 3.1 (224x224)",
        "method.model": "paper: Sec. 3.1 (ViT-L/16)",
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
        self.predictor = VJEPAPredictor(
            encoder_dim=dim,
            dim=config.predictor_dim or min(384, dim // 2),
            depth=config.predictor_depth,
            num_heads=heads,
            grid=encoder.grid,
            num_mask_tokens=len(config.mask_scales),
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
        aspect = (cfg.mask_aspect[0], cfg.mask_aspect[1])
        for index, (scale, count) in enumerate(zip(cfg.mask_scales, cfg.mask_counts, strict=True)):
            masks = multiblock_mask(clips.shape[0], grid, generator, scale, count, aspect, device=clips.device)
            context_tokens = self.context_encoder(clips, mask=~masks.context)
            prediction = self.predictor(context_tokens, masks.context, masks.predicted, index)
            jepa_terms.append(jepa_loss(prediction, gather_tokens(targets, masks.predicted, keep=True)))
            if self.localiser is not None:
                ll_terms.append(self._localisation(prediction, masks.predicted, generator, scale))
        loss_jepa = torch.stack(jepa_terms).mean()
        terms = {"jepa": float(loss_jepa.detach())}
        if not ll_terms:
            return LossOutput(loss=loss_jepa, terms=terms)
        loss_ll = torch.stack(ll_terms).mean()
        terms["localisation"] = float(loss_ll.detach())
        return LossOutput(loss=combined_loss(loss_jepa, loss_ll, cfg.lambda_ll), terms=terms)

    def _localisation(
        self, prediction: torch.Tensor, predicted: torch.Tensor, generator: torch.Generator, scale: float
    ) -> torch.Tensor:
        """L_ll (Eq. 3) of ``pairs`` random pairs of one generator's predictions ``(B, n, D)`` at ``predicted``."""
        assert self.localiser is not None
        batch, num_masked = prediction.shape[:2]
        if num_masked < 2:
            raise UserError(
                f"method.lambda_ll={self.config.lambda_ll}: the mask of scale {scale} predicts {num_masked} token per "
                "clip and the localisation pairs need two; use a larger token grid (method.frames, method.size) or "
                "method.lambda_ll=1.0"
            )
        first, second = (p.to(prediction.device) for p in sample_pairs(batch, num_masked, self.config.pairs, generator))
        # Row-major nonzero lists each row's predicted tokens in t-major order, the predictor's output order.
        masked_index = predicted.nonzero()[:, 1].reshape(batch, num_masked)
        grid = self.context_encoder.grid
        delta = localisation_targets(masked_index.gather(1, first), masked_index.gather(1, second), grid)
        pairs = torch.cat([gather_by_index(prediction, first), gather_by_index(prediction, second)], dim=-1)
        return localisation_loss(self.localiser(pairs), delta)

    def ema_momentum(self, state: TrainState) -> float:
        """Target-encoder momentum after the step ``state``: ``ema_start`` at step 0, then linear in
        ``step / (ema_ipe_scale·total_steps)`` (code: facebookresearch/jepa app/vjepa/train.py
        ``momentum_scheduler``)."""
        cfg = self.config
        ramp = state.step / (cfg.ema_ipe_scale * max(1, state.total_steps))
        return linear_schedule(cfg.ema_start, cfg.ema_end, ramp)

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
    """A V-JEPA predictor parameter name → VJEPAPredictor's (None: dropped)."""
    if name.startswith("mask_tokens."):
        return name  # one per mask generator, in the same order as the code's ``mask`` configs
    for theirs, ours in _PREDICTOR_NAMES:
        if name.startswith(theirs):
            return ours + name.removeprefix(theirs)
    return None  # the fixed predictor_pos_embed


def map_vjepa_checkpoint(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], in_chans: int
) -> dict[str, torch.Tensor]:
    """Rename a flattened V-JEPA checkpoint to the VJEPA method's ``state_dict`` names.

    ``encoder`` → ``context_encoder``, ``target_encoder`` → ``encoder`` (the downstream target encoder), the
    predictor to :class:`VJEPAPredictor` (mask tokens of generators this config lacks are dropped); a file
    holding only one encoder starts both from it (V-JEPA's own start: the target is a copy). RGB patch-embedding
    kernels are summed over colour for grey input (``in_chans`` 1), which equals feeding the grey frame as three
    equal channels (not in the paper). Optimiser state and anything else are dropped. A file that leaves an
    encoder tensor unset is not this architecture: UserError.
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
        if ours is None or (ours.startswith("mask_tokens.") and prefix + ours not in own):
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
