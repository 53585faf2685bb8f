"""MGMAE: VideoMAE with motion-guided masking (METHODS.md baselines).

Encoder, decoder and the normalised-pixel MSE on masked tokens are VideoMAE's
(:class:`~echobench_plugins.videomae.VideoMAE`); only the mask changes. Optical flow is computed in the DataLoader
workers (:meth:`MGMAE.prepare_sample`, on the raw uint8 frames) and reduced to per-token displacements; the
training step draws a random masking map for a base slice from the global RNG, warps it along the flow
(:func:`motion.warp_from_base`) and masks the top ``H'W' − int(H'W'·(1 − ratio))`` tokens of every slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from echobench.api import ClipBatch, SampleMeta
from echobench.models.masking import MaskRounding
from echobench_plugins.mgmae.motion import token_displacement, top_k_per_slice, warp_from_base
from echobench_plugins.videomae.method import VideoMAE, VideoMAEConfig


@dataclass
class MGMAEConfig(VideoMAEConfig):
    """VideoMAE's hyperparameters (mask ratio 0.9, decoder depth 4, half-width decoder) with motion-guided masking.

    Optical flow: the authors use RAFT, whose weights and code cannot be shipped with echobench; OpenCV's
    Farneback flow (``cv2.calcOpticalFlowFarneback`` with OpenCV's example parameters) on the raw uint8 frames is
    the documented substitute.

    ``mask_rounding`` = ``"visible"``: every slice keeps ``int(H'W'·(1 − ratio))`` tokens visible and masks the
    rest (code: MCG-NJU/MGMAE engine_for_mgmae.py ``get_build_mask_volume_func``), e.g. 19 of 196 at 0.9 (177
    masked; VideoMAE's rule, ``"masked"``, masks 176). The base slice is the middle one (``base``: ``"middle"``
    or ``"first"``), as the authors' scripts (``--base_frame middle``).

    Not in the paper, and not the authors' code (echobench's choices): each tubelet slice is represented by its
    first frame; the flow is averaged over each patch and expressed in token units; the masking map is uniform
    noise per token, warped bilinearly slice to slice, and tokens whose source lies outside the frame take fresh
    noise of their own slice. The code (MCG-NJU/MGMAE scripts/mgmae/*.sh, ``--init_mask_map mix_gauss
    --warp_type backward --hole_filling consist``) instead builds a pixel-level map of the base frame as the
    maximum of Gaussians (σ = one patch) centred on ``H'W' − int(ratio·H'W')`` random patches
    (dataset/masking_generator.py ``MixGaussianInitialMaskingGenerator``), warps it frame by frame along RAFT flow,
    fills positions left empty by the warp with the base map's value at the same place, sums each tubelet's pixels
    and keeps the highest sums visible.
    """

    base: Literal["first", "middle"] = "middle"
    mask_rounding: MaskRounding = "visible"


class MGMAE(VideoMAE):
    name = "mgmae"
    version = "0.2.0"
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
        return top_k_per_slice(warped, self.config.mask_ratio, self.config.mask_rounding)
