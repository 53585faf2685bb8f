"""MAE decoder: visible encoder tokens + mask tokens → per-token predictions.

Also serves as a V-JEPA-style predictor (``out_dim = encoder_dim``, ``pos="sincos_3d"``) and, with
``background_token=True``, as EchoCardMAE's decoder, where one learned (zero-init) token stands in at every
background position (tokens neither encoded nor reconstructed).
"""

from __future__ import annotations

import torch
from torch import nn

from echobench.errors import UserError
from echobench.models.masking import gather_tokens
from echobench.models.pos_embed import sincos_1d, sincos_3d
from echobench.models.vit import init_vit_weights, make_blocks


class MAEDecoder(nn.Module):
    """Narrow transformer that fills masked positions and predicts ``out_dim`` values per token."""

    pos_fixed: torch.Tensor

    def __init__(
        self,
        encoder_dim: int,
        decoder_dim: int,
        depth: int,
        num_heads: int,
        num_patches: int,
        out_dim: int,
        pos: str = "sincos",
        *,
        grid: tuple[int, int, int] | None = None,
        background_token: bool = False,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if decoder_dim % num_heads:
            raise UserError(f"decoder dim {decoder_dim} is not divisible by {num_heads} heads; change one of them")
        if pos == "sincos":
            table = sincos_1d(num_patches, decoder_dim)
        elif pos == "sincos_3d":
            if grid is None or grid[0] * grid[1] * grid[2] != num_patches:
                raise UserError(f"pos='sincos_3d' needs the token grid (T', H', W') of {num_patches} tokens; pass grid")
            table = sincos_3d(grid, decoder_dim)
        else:
            raise UserError(f"unknown decoder position embedding {pos!r}; choose 'sincos' or 'sincos_3d'")
        self.num_patches = num_patches
        self.embed = nn.Linear(encoder_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.background_token = nn.Parameter(torch.zeros(1, 1, decoder_dim)) if background_token else None
        self.register_buffer("pos_fixed", table[None], persistent=False)
        self.blocks = make_blocks(decoder_dim, depth, num_heads, mlp_ratio, 0.0)
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.head = nn.Linear(decoder_dim, out_dim)
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token", "background_token"} if self.background_token is not None else {"mask_token"}

    def forward(
        self,
        visible_tokens: torch.Tensor,
        mask: torch.Tensor,
        return_masked_only: bool = True,
        background: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predictions from encoder tokens ``(B, N_vis, encoder_dim)`` (patch tokens only, t-major).

        ``mask`` ``(B, N)``: True = masked (to predict). ``background`` ``(B, N)``: True = neither visible nor
        predicted (needs ``background_token``); visible positions are ``~mask & ~background``. Returns
        ``(B, N_masked, out_dim)`` in t-major order — aligned with ``gather_tokens(targets, mask, keep=True)`` —
        or ``(B, N, out_dim)`` for every position when ``return_masked_only`` is False.
        """
        batch, num = mask.shape
        if num != self.num_patches:
            raise ValueError(f"mask has {num} tokens, decoder was built for {self.num_patches}")
        hidden = mask
        filler = self.mask_token.expand(batch, num, -1)
        if background is not None:
            if self.background_token is None:
                raise ValueError("background positions given but the decoder has no background token")
            if bool((background & mask).any()):
                raise ValueError("a token cannot be both masked and background")
            hidden = mask | background
            filler = torch.where(background[..., None], self.background_token, self.mask_token)
        visible = ~hidden
        if bool((visible.sum(dim=1) != visible_tokens.shape[1]).any()):
            raise ValueError(
                f"got {visible_tokens.shape[1]} visible tokens but the mask leaves "
                f"{visible.sum(dim=1).tolist()} visible"
            )
        projected = self.embed(visible_tokens)
        # masked_scatter fills selected slots in row-major order, i.e. the t-major order of the visible tokens.
        tokens = filler.masked_scatter(visible[..., None].expand_as(filler), projected.to(filler.dtype))
        tokens = tokens + self.pos_fixed
        for block in self.blocks:
            tokens = block(tokens)
        if return_masked_only:
            tokens = gather_tokens(tokens, mask, keep=True)
        return self.head(self.norm(tokens))
