"""EchoVisionFM's STFF-Net (Zhang et al., Sec. 3.2): spatio-temporal feature fusion over the token grid.

Facts from the paper: the grid is reshaped to ``(N, D, t, h, w)``; two pathways each end in a ``D``-vector and
are concatenated to ``2D`` for a task head.

1. Joint space-time: add a dense 3-D positional encoding → a ResNet block of 3-D convolutions, batch norm and
   ReLU → flatten the ``t·h·w`` tokens → gated attention pooling (Ilse et al.) → ``D``.
2. Disjoint space-time: treat the grid as ``N·t`` 2-D maps ``(D, h, w)`` → 2-D ResNet block → a Conv2d with stride
   ``(h, w)`` that collapses each frame → sequence ``(N, t, D)`` → add a "sparse" temporal encoding (sinusoid
   of the real frame indices, passed through a two-layer fully connected network) → gated attention pooling →
   ``D``.

Choices made here (the paper gives no sizes):

* Dense 3-D encoding = V-JEPA's fixed 3-D sin-cos table (:func:`sincos_3d`), width ``D``.
* Each ResNet block is a torchvision-style basic block of width ``D``: conv 3(×3×3), no bias → BN → ReLU →
  conv → BN → add input → ReLU. For ViT-S (``D = 384``) on a 7×7 grid: 8.0 M parameters (3-D), 2.7 M (2-D).
* The collapsing conv has kernel = stride = ``(h, w)``, ``D → D`` (7.2 M parameters for ``D = 384``, 7×7).
* Temporal sinusoid: MAE-style ``[sin | cos]`` of width ``2⌊D/2⌋`` over float frame indices; the MLP is
  ``Linear(2⌊D/2⌋ → D) → GELU → Linear(D → D)``.
* Gated attention pooling hidden width 128 (Ilse et al.'s value); the task head is one Linear ``2D → outputs``.
"""

from __future__ import annotations

import torch
from torch import nn

from echobench.errors import UserError
from echobench.models.heads import GatedAttentionPool
from echobench.models.pos_embed import sincos_3d, sincos_axis


class _BasicBlock(nn.Module):
    """ResNet basic block at constant width ``dim`` for 2-D (``ndim=2``) or 3-D (``ndim=3``) maps."""

    def __init__(self, dim: int, ndim: int) -> None:
        super().__init__()
        conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d
        self.conv1 = conv(dim, dim, kernel_size=3, padding=1, bias=False)
        self.bn1 = norm(dim)
        self.conv2 = conv(dim, dim, kernel_size=3, padding=1, bias=False)
        self.bn2 = norm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class STFFHead(nn.Module):
    """STFF-Net plus a linear task head; see the module docstring for which facts are the paper's.

    ``spatial`` is the token grid's ``(H', W')``: the disjoint pathway's collapsing conv needs it at
    construction. With ``frame_indices_aware=False`` the temporal encoding always uses the ordinal token index
    ``0 … T'−1`` (an ablation of the paper's real-frame-index encoding).
    """

    def __init__(
        self,
        dim: int,
        outputs: int,
        spatial: tuple[int, int],
        frame_indices_aware: bool = True,
        pool_hidden: int = 128,
    ) -> None:
        super().__init__()
        if min(dim, outputs, pool_hidden, *spatial) < 1:
            raise UserError(
                f"STFF head needs positive sizes, got dim {dim}, outputs {outputs}, spatial grid {spatial}, "
                f"pool_hidden {pool_hidden}; fix the head config"
            )
        self.dim, self.spatial, self.frame_indices_aware = dim, tuple(spatial), frame_indices_aware
        self.joint_block = _BasicBlock(dim, ndim=3)
        self.joint_pool = GatedAttentionPool(dim, pool_hidden)
        self.frame_block = _BasicBlock(dim, ndim=2)
        self.collapse = nn.Conv2d(dim, dim, kernel_size=spatial, stride=spatial)
        self.time_mlp = nn.Sequential(nn.Linear(2 * (dim // 2), dim), nn.GELU(), nn.Linear(dim, dim))
        self.disjoint_pool = GatedAttentionPool(dim, pool_hidden)
        self.head = nn.Linear(2 * dim, outputs)

    def _check(self, tokens: torch.Tensor, frame_times: torch.Tensor | None) -> None:
        if tokens.ndim != 5 or tuple(tokens.shape[2:]) != (*self.spatial, self.dim):
            raise ValueError(
                f"STFFHead expects tokens (B, T', {self.spatial[0]}, {self.spatial[1]}, {self.dim}), "
                f"got {tuple(tokens.shape)}"
            )
        if frame_times is not None and frame_times.shape != tokens.shape[:2]:
            raise ValueError(
                f"frame_times must have shape (B, T') = {tuple(tokens.shape[:2])}, got {tuple(frame_times.shape)}"
            )

    def joint(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint pathway: ``(B, T', H', W', D)`` → ``(B, D)`` and pooling weights ``(B, T'·H'·W')``."""
        _, t, h, w, dim = tokens.shape
        pos = sincos_3d((t, h, w), dim).to(tokens)
        x = (tokens + pos.reshape(t, h, w, dim)).permute(0, 4, 1, 2, 3)
        x = self.joint_block(x)
        return self.joint_pool(x.flatten(2).transpose(1, 2))

    def disjoint(self, tokens: torch.Tensor, frame_times: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Disjoint pathway: ``(B, T', H', W', D)`` → ``(B, D)`` and pooling weights ``(B, T')``."""
        batch, t, h, w, dim = tokens.shape
        frames = tokens.reshape(batch * t, h, w, dim).permute(0, 3, 1, 2)
        sequence = self.collapse(self.frame_block(frames)).reshape(batch, t, dim)
        if frame_times is None or not self.frame_indices_aware:
            frame_times = torch.arange(t, device=tokens.device).expand(batch, t)
        sinusoid = sincos_axis(frame_times.flatten(), dim).to(tokens).reshape(batch, t, -1)
        return self.disjoint_pool(sequence + self.time_mlp(sinusoid))

    def embed(self, tokens: torch.Tensor, frame_times: torch.Tensor | None = None) -> torch.Tensor:
        """The fused ``2D`` representation ``[joint | disjoint]`` ``(B, 2D)``."""
        self._check(tokens, frame_times)
        return torch.cat([self.joint(tokens)[0], self.disjoint(tokens, frame_times)[0]], dim=1)

    def forward(self, tokens: torch.Tensor, frame_times: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``(B, T', H', W', D)`` and real frame index per token frame ``(B, T')`` → ``(B, outputs)``.

        ``frame_times`` are source-video frame indices of each temporal token (e.g. the centre frame of its
        tubelet); None means ``0 … T'−1``.
        """
        return self.head(self.embed(tokens, frame_times))
