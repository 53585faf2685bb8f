"""MGMAE: VideoMAE with motion-guided masking (METHODS.md baselines).

Encoder, decoder and the normalised-pixel MSE on masked tokens are VideoMAE's
(:class:`~echobench_plugins.videomae.VideoMAE`); only the mask changes. Optical flow is computed in the DataLoader
workers (:meth:`MGMAE.prepare_sample`, on the raw uint8 frames) and reduced to per-token displacements; the
training step draws a random masking map for a base slice from the global RNG, warps it along the flow
(:func:`motion.warp_from_base`) and masks the top ``int(ratio·H'W')`` tokens of every slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from echobench.api import ClipBatch, SampleMeta
from echobench_plugins.mgmae.motion import token_displacement, top_k_per_slice, warp_from_base
from echobench_plugins.videomae.method import VideoMAE, VideoMAEConfig


@dataclass
class MGMAEConfig(VideoMAEConfig):
    """VideoMAE's hyperparameters (mask ratio 0.9, decoder depth 4, half-width decoder) with motion-guided masking.

    Optical flow: the authors use RAFT, whose weights and code cannot be shipped with echobench; OpenCV's
    Farneback flow (``cv2.calcOpticalFlowFarneback`` with OpenCV's example parameters) on the raw uint8 frames is
    the documented substitute.

    Not in the paper (echobench's choices): each tubelet slice is represented by its first frame; the flow is
    averaged over each patch and expressed in token units; the base slice is the middle one (``base``:
    ``"middle"`` or ``"first"``); the masking map is uniform noise, warped bilinearly, and tokens whose source lies
    outside the frame take fresh noise of their own slice.
    """

    base: Literal["first", "middle"] = "middle"


class MGMAE(VideoMAE):
    name = "mgmae"
    version = "0.1.0"
    Config = MGMAEConfig

    def __init__(self, config: MGMAEConfig) -> None:
        if config.base not in ("first", "middle"):
            raise ValueError(f"base must be 'first' or 'middle', got {config.base!r}")
        super().__init__(config)

    def prepare_sample(self, frames: torch.Tensor, frame_indices: np.ndarray, meta: SampleMeta) -> dict[str, Any]:
        cfg = self.config
        return {"displacement": torch.from_numpy(token_displacement(frames[0].numpy(), cfg.tubelet, cfg.patch))}

    def base_slice(self) -> int:
        return 0 if self.config.base == "first" else self.encoder.grid[0] // 2

    def draw_mask(self, batch: ClipBatch) -> torch.Tensor:
        displacement = batch.extras.get("displacement")
        if displacement is None:
            raise ValueError("MGMAE needs batch.extras['displacement'] from its prepare_sample (optical flow)")
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        noise = torch.rand((batch.clips.shape[0], *self.encoder.grid), generator=generator)
        warped = warp_from_base(noise, displacement.float().cpu(), self.base_slice())
        return top_k_per_slice(warped, self.config.mask_ratio)
