"""Downstream heads over the frozen token grid ``(B, T', H', W', D)`` (``Embedding.tokens``).

* :class:`GatedAttentionPool` — Ilse et al. (2018) gated attention MIL pooling, used by STFF-Net
  (:mod:`echobench.models.stff`).
* :class:`AttentiveProbe` — V-JEPA's attentive probe (one learned query, one cross-attention block, linear head).
* :class:`MaxPoolHead` — EchoVisionFM's baseline (max over all tokens, linear head).
* :class:`MeanStdHead` — the ``mean_std`` readout of the frozen protocols (grid mean and motion map), then a Linear.
* :class:`LinearUpsampleSegHead` — DISCOVER's segmentation head (per-token linear layer, bilinear upsampling).
* :class:`TransposedConvSegHead` — V-JEPA-style shallow decoder of two transposed convolutions.

Segmentation heads decode one temporal token index per sample (``frame`` ``(B,)``) or, when ``frame`` is None,
the time-averaged grid. Tensor-shape mistakes are the caller's code, hence ``ValueError``; configuration
mistakes (sizes from configs) raise ``UserError``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from echobench.errors import UserError


def flatten_grid(tokens: torch.Tensor, dim: int) -> torch.Tensor:
    """``(B, T', H', W', D)`` or ``(B, N, D)`` → ``(B, N, D)`` (t-major), checking the feature width."""
    if tokens.ndim == 5:
        tokens = tokens.flatten(1, 3)
    if tokens.ndim != 3 or tokens.shape[-1] != dim:
        raise ValueError(f"expected tokens (B, T', H', W', {dim}) or (B, N, {dim}), got {tuple(tokens.shape)}")
    return tokens


class GatedAttentionPool(nn.Module):
    """Gated attention pooling (Ilse et al. 2018, Eq. 9) over a set of ``N`` instances.

    ``a_k = softmax_k(wᵀ(tanh(V h_k) ⊙ sigmoid(U h_k)))`` and the output is ``Σ_k a_k h_k``. ``V`` and ``U`` are
    ``hidden × dim``, ``w`` is ``hidden``, all without bias as in the paper's equation (a bias on ``w`` would
    cancel in the softmax anyway). Ilse et al. use ``hidden = 128``.
    """

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        if dim < 1 or hidden < 1:
            raise UserError(f"gated attention pooling needs dim >= 1 and hidden >= 1, got {dim}, {hidden}")
        self.dim = dim
        self.V = nn.Linear(dim, hidden, bias=False)
        self.U = nn.Linear(dim, hidden, bias=False)
        self.w = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, N, dim)`` → pooled ``(B, dim)`` and attention weights ``(B, N)`` (each row sums to 1)."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"GatedAttentionPool expects (B, N, {self.dim}), got {tuple(x.shape)}")
        scores = self.w(torch.tanh(self.V(x)) * torch.sigmoid(self.U(x))).squeeze(-1)
        weights = scores.softmax(dim=-1)
        return torch.einsum("bn,bnd->bd", weights, x), weights


class AttentiveProbe(nn.Module):
    """V-JEPA's attentive probe: a learned query cross-attends to all tokens, then a linear head.

    One cross-attention block, pre-norm as in V-JEPA's ``CrossAttentionBlock``: the keys/values are the
    layer-normed tokens, the query is the learned token itself; ``q ← q + proj(attn(W_q q, W_k x̂, W_v x̂))``,
    then ``q ← q + MLP(LN(q))``; the head is a Linear on ``q``. No positional terms are added, so the output is
    invariant to the token order. Init follows V-JEPA: query and Linear weights trunc-normal std 0.02, zero biases.
    """

    def __init__(self, dim: int, outputs: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim < 1 or outputs < 1 or num_heads < 1 or dim % num_heads:
            raise UserError(
                f"attentive probe needs dim divisible by num_heads and positive sizes, got dim {dim}, "
                f"{num_heads} heads, {outputs} outputs; change the probe config"
            )
        self.dim, self.num_heads = dim, num_heads
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.head = nn.Linear(dim, outputs)
        self.apply(_init_trunc_normal)
        nn.init.trunc_normal_(self.query, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"query"}

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The query token after the cross-attention block, ``(B, D)``."""
        x = self.norm1(flatten_grid(tokens, self.dim))
        batch, num, _ = x.shape
        query = self.query.expand(batch, -1, -1)
        q = self.q(query).reshape(batch, 1, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(x).reshape(batch, num, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, 1, self.dim)
        out = query + self.proj(attended)
        out = out + self.mlp(self.norm2(out))
        return out.squeeze(1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, T', H', W', D)`` (or ``(B, N, D)``) → ``(B, outputs)``."""
        return self.head(self.pool(tokens))


def _init_trunc_normal(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class MaxPoolHead(nn.Module):
    """EchoVisionFM's baseline head: channel-wise max over all tokens, then a Linear."""

    def __init__(self, dim: int, outputs: int) -> None:
        super().__init__()
        self.dim = dim
        self.head = nn.Linear(dim, outputs)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, T', H', W', D)`` (or ``(B, N, D)``) → ``(B, outputs)``."""
        return self.head(flatten_grid(tokens, self.dim).amax(dim=1))


class MeanStdHead(nn.Module):
    """A Linear on the ``mean_std`` readout (:mod:`echobench.protocols.readout`): the token grid's mean over time
    and space beside its motion map (each location's temporal SD, averaged over channels), each feature standardised
    over the batch (BatchNorm, running statistics at evaluation) as the frozen probes standardise over the training
    split: videos differ in these features by a small fraction of their common value. A mean-pooled head cannot see
    motion; this one can, at the cost of a Linear."""

    def __init__(self, dim: int, outputs: int, locations: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim + locations, affine=False)
        self.head = nn.Linear(dim + locations, outputs)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, T', H', W', D)`` → ``(B, outputs)``."""
        if tokens.dim() != 5:
            raise ValueError(f"MeanStdHead needs the token grid (B, T', H', W', D), got {tuple(tokens.shape)}")
        mean = tokens.mean(dim=(1, 2, 3))
        # sqrt(var + eps): the gradient of a standard deviation is infinite where a token does not move.
        spread = (tokens.var(dim=1, correction=0) + 1e-6).sqrt().mean(dim=-1).flatten(1)
        return self.head(self.norm(torch.cat([mean, spread], dim=1)))


def select_frame(tokens: torch.Tensor, frame: torch.Tensor | None) -> torch.Tensor:
    """``(B, T', H', W', D)`` → channels-first map ``(B, D, H', W')`` of token frame ``frame[b]`` per sample.

    ``frame`` ``(B,)`` holds temporal token indices (``t'``, not video frames); None averages over ``T'``.
    """
    if tokens.ndim != 5:
        raise ValueError(f"segmentation heads expect tokens (B, T', H', W', D), got {tuple(tokens.shape)}")
    if frame is None:
        grid = tokens.mean(dim=1)
    else:
        if frame.shape != (tokens.shape[0],):
            raise ValueError(f"frame must have shape ({tokens.shape[0]},), got {tuple(frame.shape)}")
        grid = tokens[torch.arange(tokens.shape[0], device=tokens.device), frame.to(tokens.device).long()]
    return grid.permute(0, 3, 1, 2)


class _SegHead(nn.Module):
    """Shared geometry checks: a ``img_size / patch`` square token grid decoded to ``img_size²`` logits."""

    def __init__(self, dim: int, classes: int, patch: int, img_size: int) -> None:
        super().__init__()
        if min(dim, classes, patch, img_size) < 1 or img_size % patch:
            raise UserError(
                f"segmentation head needs positive sizes and img_size divisible by patch, got dim {dim}, "
                f"classes {classes}, patch {patch}, img_size {img_size}; fix the model geometry"
            )
        self.dim, self.classes, self.patch, self.img_size = dim, classes, patch, img_size

    def _grid(self, tokens: torch.Tensor, frame: torch.Tensor | None) -> torch.Tensor:
        side = self.img_size // self.patch
        if tokens.ndim != 5 or tokens.shape[2:] != (side, side, self.dim):
            raise ValueError(
                f"expected tokens (B, T', {side}, {side}, {self.dim}) for img_size {self.img_size} and patch "
                f"{self.patch}, got {tuple(tokens.shape)}"
            )
        return select_frame(tokens, frame)


class LinearUpsampleSegHead(_SegHead):
    """DISCOVER's head: a Linear ``D → classes`` per token (a 1×1 conv), then bilinear upsampling to ``img_size``.

    DISCOVER's evaluation text says once "linear layer followed by Conv2D upsampling blocks" and elsewhere
    "simple linear+upsampling head"; this is the parameter-free-upsampling reading (the linear probe of dense
    features), so the decoder adds no capacity beyond the per-token linear map.
    """

    def __init__(self, dim: int, classes: int, patch: int, img_size: int) -> None:
        super().__init__(dim, classes, patch, img_size)
        self.linear = nn.Conv2d(dim, classes, kernel_size=1)

    def forward(self, tokens: torch.Tensor, frame: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``(B, T', H', W', D)`` → per-pixel logits ``(B, classes, img_size, img_size)``."""
        logits = self.linear(self._grid(tokens, frame))
        return F.interpolate(logits, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)


class TransposedConvSegHead(_SegHead):
    """Shallow decoder of two transposed convolutions (Ellis et al., after V-JEPA's frozen evaluation).

    ``ConvTranspose2d(D → D/2, kernel = stride = 2) → GELU → ConvTranspose2d(D/2 → classes, kernel = stride =
    patch/2)``: the two strides multiply to ``patch`` so the output is exactly ``img_size`` (patch 16: 2 × 8;
    patch 8: 2 × 4). The paper gives only "2 transpose convolutional layers"; widths, kernels and the GELU are
    this implementation's choice. No normalisation layer: the paper trains with batch size 4, too small for
    BatchNorm statistics.
    """

    def __init__(self, dim: int, classes: int, patch: int, img_size: int) -> None:
        super().__init__(dim, classes, patch, img_size)
        if patch % 2:
            raise UserError(f"TransposedConvSegHead needs an even patch size (two ×2 and ×patch/2 stages), got {patch}")
        hidden = max(dim // 2, 1)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(dim, hidden, kernel_size=2, stride=2),
            nn.GELU(),
            nn.ConvTranspose2d(hidden, classes, kernel_size=patch // 2, stride=patch // 2),
        )

    def forward(self, tokens: torch.Tensor, frame: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``(B, T', H', W', D)`` → per-pixel logits ``(B, classes, img_size, img_size)``."""
        return self.decoder(self._grid(tokens, frame))
