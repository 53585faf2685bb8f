"""The shared video ViT: tubelet embedding, positions, timm Blocks, final norm.

Tokens are t-major (``t'·H'W' + h'·W' + w'``) over the grid ``(T', H', W') = (frames/tubelet, img/patch,
img/patch)``. Position options:

* ``sincos``: VideoMAE's fixed 1-D table over the flattened token index (:func:`sincos_1d`);
* ``sincos_3d``: V-JEPA's fixed 3-D table (:func:`sincos_3d`, uniform power);
* ``learned_st``: Temporal MAE's learned spatial table ``(H'W', D)`` plus temporal table ``(T', D)``.

Fixed tables are non-persistent buffers (rebuilt from the config, so checkpoints do not carry them). The CLS
token, when enabled, gets no position: it is itself learned, so a learned offset would be redundant.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from timm.models.vision_transformer import Block
from torch import nn

from echobench.api import Embedding, MethodConfig
from echobench.errors import UserError
from echobench.models.masking import gather_tokens
from echobench.models.pos_embed import sincos_1d, sincos_3d

PosKind = Literal["sincos", "sincos_3d", "learned_st"]
POS_KINDS: tuple[str, ...] = ("sincos", "sincos_3d", "learned_st")

PRESETS: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
}
"""Preset name → ``(embed_dim, depth, num_heads)``."""


def make_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float) -> nn.ModuleList:
    """``depth`` timm Blocks with qkv bias, LayerNorm eps 1e-6 and linearly increasing stochastic depth."""
    rates = torch.linspace(0, drop_path, depth).tolist()
    return nn.ModuleList(
        Block(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_path=rate,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )
        for rate in rates
    )


def init_vit_weights(module: nn.Module) -> None:
    """ViT/MAE init, for ``Module.apply``: xavier-uniform Linear with zero bias, LayerNorm ones/zeros."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VideoViT(nn.Module):
    """Video Vision Transformer shared by every method plugin; satisfies :class:`echobench.api.VideoEncoder`."""

    pos_fixed: torch.Tensor

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        img_size: int,
        frames: int,
        patch: int,
        tubelet: int,
        in_chans: int = 1,
        pos: PosKind = "sincos",
        cls_token: bool = False,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        _check_geometry(embed_dim, depth, num_heads, img_size, frames, patch, tubelet, in_chans, pos)
        self.embed_dim = embed_dim
        self.img_size, self.frames, self.patch, self.tubelet, self.in_chans = img_size, frames, patch, tubelet, in_chans
        self.grid = (frames // tubelet, img_size // patch, img_size // patch)
        t, h, w = self.grid
        self.num_patches = t * h * w
        self.num_prefix = 1 if cls_token else 0
        self.pos = pos

        self.patch_embed = nn.Conv3d(
            in_chans, embed_dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if cls_token else None
        self.pos_spatial: nn.Parameter | None = None
        self.pos_temporal: nn.Parameter | None = None
        if pos == "learned_st":
            self.pos_spatial = nn.Parameter(torch.zeros(1, h * w, embed_dim))
            self.pos_temporal = nn.Parameter(torch.zeros(1, t, embed_dim))
        else:
            table = sincos_1d(self.num_patches, embed_dim) if pos == "sincos" else sincos_3d(self.grid, embed_dim)
            self.register_buffer("pos_fixed", table[None], persistent=False)
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> VideoViT:
        """Build a preset (``PRESETS``); ``kwargs`` give the geometry and may override the preset's fields."""
        if name not in PRESETS:
            raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        embed_dim, depth, num_heads = PRESETS[name]
        return cls(**({"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads} | kwargs))

    @classmethod
    def from_config(cls, config: MethodConfig, **kwargs: Any) -> VideoViT:
        """The encoder a method's shared config fields describe (preset, clip geometry, channels)."""
        geometry = {
            "img_size": config.size,
            "frames": config.frames,
            "patch": config.patch,
            "tubelet": config.tubelet,
            "in_chans": config.in_chans,
        }
        return cls.from_preset(config.model, **(geometry | kwargs))

    def _init_weights(self) -> None:
        self.apply(init_vit_weights)
        weight = self.patch_embed.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for param in (self.cls_token, self.pos_spatial, self.pos_temporal):
            if param is not None:
                nn.init.trunc_normal_(param, std=0.02)

    def position_embedding(self) -> torch.Tensor:
        """Positions of the patch tokens ``(1, N, D)`` in t-major order."""
        if self.pos_spatial is not None and self.pos_temporal is not None:
            return (self.pos_temporal[:, :, None, :] + self.pos_spatial[:, None, :, :]).flatten(1, 2)
        return self.pos_fixed

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AdamW should not decay (learned tokens and positions)."""
        return {name for name in ("cls_token", "pos_spatial", "pos_temporal") if getattr(self, name) is not None}

    def _check_clip(self, x: torch.Tensor) -> None:
        expected = (self.in_chans, self.frames, self.img_size, self.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"VideoViT expects clips (B, C, T, H, W) with (C, T, H, W) = {expected} (tubelet {self.tubelet}, "
                f"patch {self.patch}), got shape {tuple(x.shape)}"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus positions ``(B, N, D)``, t-major, without the CLS token."""
        self._check_clip(x)
        # contiguous: a transposed (B, N, D) view would propagate its strides through every residual add and
        # make each LayerNorm and Linear copy its input.
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2).contiguous()
        return tokens + self.position_embedding()

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prefix (CLS) + blocks + final norm on already embedded tokens ``(B, n, D)`` → ``(B, prefix + n, D)``."""
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a clip; with ``mask`` ``(B, N)`` (True = hidden) only the visible tokens are encoded."""
        tokens = self.embed(x)
        if mask is not None:
            tokens = gather_tokens(tokens, mask, keep=False)
        return self.forward_tokens(tokens)

    def forward_features(self, x: torch.Tensor) -> Embedding:
        """Downstream features: CLS (or mean of patch tokens) and the token grid ``(B, T', H', W', D)``."""
        out = self.forward(x)
        patches = out[:, self.num_prefix :]
        pooled = out[:, 0] if self.cls_token is not None else patches.mean(dim=1)
        return Embedding(pooled=pooled, tokens=patches.reshape(x.shape[0], *self.grid, self.embed_dim))

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer grouping for layer-wise lr decay: the stem (patch embedding, positions, CLS) is layer 0,
        block ``i`` layer ``i + 1``, the final norm a layer of its own above the last block (BEiT's convention; the
        ordinal is not timm's 99999, which would merge the norm into the last block)."""
        return {
            "stem": r"^cls_token|^pos_spatial|^pos_temporal|^patch_embed",
            "blocks": r"^blocks\.(\d+)" if coarse else [(r"^blocks\.(\d+)", None), (r"^norm", (1_000_000,))],
        }

    def freeze_first(self, k: int) -> None:
        """Stop gradients to the patch embedding, learned positions and the first ``k`` blocks.

        The CLS token stays trainable: it is an input of the first unfrozen block, not a low-level feature.
        """
        if not 0 <= k <= len(self.blocks):
            depth = len(self.blocks)
            raise UserError(f"cannot freeze {k} blocks of a {depth}-block encoder; use 0 … {depth}")
        frozen: list[nn.Module | nn.Parameter | None] = [self.patch_embed, self.pos_spatial, self.pos_temporal]
        frozen += list(self.blocks[:k])
        for item in frozen:
            if item is not None:
                item.requires_grad_(False)


def _check_geometry(
    embed_dim: int,
    depth: int,
    num_heads: int,
    img_size: int,
    frames: int,
    patch: int,
    tubelet: int,
    in_chans: int,
    pos: str,
) -> None:
    """Configuration mistakes are the user's (they come from method configs), hence UserError."""
    if min(embed_dim, num_heads, img_size, frames, patch, tubelet, in_chans) < 1 or depth < 0:
        raise UserError("model sizes must be positive (depth >= 0); fix the model/geometry config")
    if embed_dim % num_heads:
        raise UserError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}; change one of them")
    if img_size % patch:
        raise UserError(f"size {img_size} is not divisible by patch {patch}; choose a size that is a multiple of it")
    if frames % tubelet:
        raise UserError(f"frames {frames} is not divisible by tubelet {tubelet}; choose a multiple of the tubelet")
    if pos not in POS_KINDS:
        raise UserError(f"unknown position embedding {pos!r}; choose one of {', '.join(POS_KINDS)}")
