"""EchoCardMAE (Yang et al.), as specified in METHODS.md: VideoMAE with key-area masking inside the ultrasound
sector, one learnable background token in the decoder, median-blurred reconstruction targets and a
temporal-invariant alignment of two clips of each video."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from echobench.api import ClipBatch, ClipSpec, Embedding, LossOutput, Method, SampleMeta, TrainState
from echobench.errors import UserError
from echobench.models.decoder import MAEDecoder
from echobench.models.masking import KeyAreaMask, MaskRounding, gather_tokens, restricted_random_mask
from echobench.models.patches import normalized_pixel_targets, patchify
from echobench.models.vit import VideoViT
from echobench_plugins.config_checks import check_clip_geometry, check_open_unit
from echobench_plugins.echocardmae.losses import AlignVariant, BlurKind, alignment_loss, blur_target
from echobench_plugins.temporal_mae.method import mask_generator
from echobench_plugins.videomae import VideoMAEConfig


@dataclass
class EchoCardMAEConfig(VideoMAEConfig):
    """Paper / code defaults: ViT-S, 112², 16 frames at stride 4, patch 8 *(code; the paper says ViT-S/16)*,
    tubelet 2 *(code)*; random masking of 75 % of the sector tokens, redrawn for each temporal slice *(code)*;
    background tokens neither encoded nor reconstructed, one zero-initialised learnable background token in the
    decoder *(code)*; median-blur targets with a 3×3 kernel *(code)* (``blur=gaussian|mean`` are the paper's
    ablation options); alignment of two clips with different starts on the mean of each clip's visible encoder
    tokens after the final norm *(code)*; ``L = L_rec + λ·L_align``, λ = 0.2 (``loss_weighting=code``:
    ``0.8·L_rec + 0.2·L_align``); batch 64, lr 1e-4, weight decay 0.05 (the paper's "0.5" read as a typo), AdamW
    betas (0.9, 0.95) *(code)*.

    Mask counts (``mask_rounding="visible"``, code: m1dsolo/EchoCardMAE utils.py ``random_mask_in_roi``): per time
    slice ``int(k·(1 − 0.75))`` of the ``k`` key-area tokens stay visible and the rest are masked, e.g. 39 of the
    code's 158-token ROI visible and 119 masked (``"masked"``, VideoMAE's rule, masks ``int(0.75·k)`` = 118).

    Key area: ``key_area=sector`` derives the sector from each sample's raw uint8 frames — a pixel belongs to it when
    it is above ``sector_threshold`` in any frame of the clip — and a token is a candidate when at least
    ``sector_coverage`` of its pixels are; ``key_area=roi`` uses the fixed rectangle ``roi`` = (top, left, bottom,
    right) as fractions of the frame (tokens whose centre lies inside).

    Not in the paper (echobench choices): ``align=infonce`` (standard InfoNCE: L2-normalised, positive included,
    symmetric, τ = 0.1; ``align=paper_eq2`` is Eq. 2 read literally); ``sector_threshold`` 0 and
    ``sector_coverage`` 0.5; the ROI rectangle's form; normalised-pixel targets of the blurred clip (VideoMAE's
    ``norm_pix_loss``); both clips reconstructed, L_rec the mean of the two; per batch and time slice every sample
    masks ``k − int(0.25·k)`` tokens with ``k`` the batch's smallest sector (larger sectors send their surplus tokens to
    the background, see :func:`echobench.models.masking.restricted_random_mask`); decoder depth 4 at half width
    (VideoMAE's).

    Where the authors' code (m1dsolo/EchoCardMAE pretrain.py) differs and echobench does not follow it: the key area
    is one fixed hand-drawn 14×14 token map for every video (utils.py ``get_roi``, 158 tokens), where echobench
    derives each clip's sector (``key_area=sector``); both clips of a sample share one mask, where echobench draws
    one per clip; targets are the blurred frames without per-patch normalisation (``norm_pix_loss=false``);
    pretraining starts from a VideoMAE ViT-S checkpoint (patch embedding interpolated from 16 to 8), where
    echobench starts from scratch; batch 16 (the paper's 64 is the default), constant lr 1e-4.
    """

    model: str = "vit_small"
    frames: int = 16
    stride: int = 4
    size: int = 112
    patch: int = 8
    tubelet: int = 2
    mask_ratio: float = 0.75
    mask_rounding: MaskRounding = "visible"
    key_area: Literal["sector", "roi"] = "sector"
    sector_threshold: int = 0
    sector_coverage: float = 0.5
    roi: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    blur: BlurKind = "median"
    blur_kernel: int = 3
    align: AlignVariant = "infonce"
    align_tau: float = 0.1
    align_weight: float = 0.2
    loss_weighting: Literal["paper", "code"] = "paper"

    def __post_init__(self) -> None:
        check_open_unit("mask_ratio", self.mask_ratio)
        check_clip_geometry(self)
        if not 0.0 < self.sector_coverage <= 1.0:
            raise UserError(f"method.sector_coverage must be in (0, 1], got {self.sector_coverage}")
        if not 0 <= self.sector_threshold < 255:
            raise UserError(f"method.sector_threshold is a uint8 level in [0, 255), got {self.sector_threshold}")
        top, left, bottom, right = self.roi
        if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
            raise UserError(
                f"method.roi = (top, left, bottom, right) fractions with top < bottom and left < right, got {self.roi}"
            )
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise UserError(f"method.blur_kernel must be an odd positive size, got {self.blur_kernel}")
        if not self.align_tau > 0:
            raise UserError(f"method.align_tau must be > 0, got {self.align_tau}")


def sector_tokens(frames: torch.Tensor, patch: int, threshold: int, coverage: float) -> torch.Tensor:
    """Candidate tokens ``(V, H'·W')`` of raw uint8 clips ``(V, T, H, W)``: patches at least ``coverage`` of whose
    pixels exceed ``threshold`` in some frame of the clip (the ultrasound sector)."""
    sector = (frames > threshold).any(dim=1).float()
    return F.avg_pool2d(sector[:, None], patch).flatten(1) >= coverage


def roi_tokens(size: int, patch: int, roi: tuple[float, float, float, float]) -> torch.Tensor:
    """Candidate tokens ``(H'·W',)`` whose centres lie in the rectangle ``roi`` (fractions of the frame)."""
    top, left, bottom, right = roi
    centres = (torch.arange(size // patch) + 0.5) * patch / size
    rows = (centres >= top) & (centres < bottom)
    cols = (centres >= left) & (centres < right)
    return (rows[:, None] & cols[None, :]).flatten()


def key_area_mask(
    candidates: torch.Tensor,
    grid: tuple[int, int, int],
    ratio: float,
    generator: torch.Generator,
    rounding: MaskRounding = "visible",
) -> KeyAreaMask:
    """Key-area masking: spatial candidates ``(B, H'·W')`` repeated at every t', then ``ratio`` of them masked,
    redrawn for each temporal slice; ``rounding="visible"`` keeps ``int(k·(1 − ratio))`` visible, as the code."""
    per_token = candidates[:, None, :].expand(-1, grid[0], -1).reshape(candidates.shape[0], -1)
    return restricted_random_mask(
        per_token, ratio, grid, generator, per_frame=True, device=candidates.device, rounding=rounding
    )


class EchoCardMAE(Method):
    name = "echocardmae"
    version = "0.2.0"
    Config = EchoCardMAEConfig
    pretrain_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-4,
        "lr_scaling": "none",
        "batch_size": 64,
        "betas": (0.9, 0.95),
        "weight_decay": 0.05,
        "epochs": 1600,
    }
    # The paper gives no schedule; the authors' code keeps lr 1e-4 constant with no warm-up.
    profile_overrides: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": {"pretrain": {"warmup_epochs": 0, "min_lr_ratio": 1.0}}
    }
    sources: ClassVar[dict[str, str]] = {
        "pretrain.epochs": "paper: 'Foundation model training' (1600 epochs)",
        "pretrain.batch_size": "paper: 'Foundation model training' (batch 64; the code uses 16)",
        "pretrain.lr": "paper: 'Foundation model training' (lr 1e-4)",
        "pretrain.weight_decay": "choice: the paper's 0.5 read as 0.05 (the code's value)",
        "pretrain.warmup_epochs": "code: m1dsolo/EchoCardMAE pretrain.py (constant lr, no warm-up)",
        "pretrain.min_lr_ratio": "code: m1dsolo/EchoCardMAE pretrain.py (constant lr)",
        "method.model": "paper: 'Foundation model training' (ViT-S)",
        "method.frames": "paper: 'Foundation model training' (16 frames)",
        "method.stride": "paper: 'Foundation model training' (stride 4)",
        "method.patch": "code: m1dsolo/EchoCardMAE (patch 8; the paper says ViT-S/16)",
        "method.mask_ratio": "code: m1dsolo/EchoCardMAE (0.75 of sector tokens)",
    }

    def __init__(self, config: EchoCardMAEConfig) -> None:
        super().__init__(config)
        self.encoder = VideoViT.from_config(config, pos="sincos", drop_path=config.drop_path)
        decoder_dim = config.decoder_dim or self.encoder.embed_dim // 2
        self.decoder = MAEDecoder(
            encoder_dim=self.encoder.embed_dim,
            decoder_dim=decoder_dim,
            depth=config.decoder_depth,
            num_heads=config.decoder_heads or max(1, decoder_dim // 64),
            num_patches=self.encoder.num_patches,
            out_dim=config.tubelet * config.patch * config.patch * config.in_chans,
            background_token=True,
        )

    def clip_spec(self) -> ClipSpec:
        c = self.config
        return ClipSpec(frames=c.frames, stride=c.stride, size=c.size, seconds=c.seconds, clips_per_video=2)

    def prepare_sample(self, frames: torch.Tensor, frame_indices: np.ndarray, meta: SampleMeta) -> dict[str, Any]:
        c = self.config
        if c.key_area == "roi":
            return {}
        return {"key_area": sector_tokens(frames, c.patch, c.sector_threshold, c.sector_coverage)}

    def candidates(self, batch: ClipBatch) -> torch.Tensor:
        """Spatial candidate tokens ``(V·B, H'·W')`` of every view, view-major (as the concatenated clips)."""
        c = self.config
        batch_size, views = batch.clips.shape[0], len(batch.views)
        if c.key_area == "roi":
            roi = roi_tokens(c.size, c.patch, c.roi).to(batch.clips.device)
            return roi[None].expand(views * batch_size, -1)
        return batch.extras["key_area"].transpose(0, 1).reshape(views * batch_size, -1)

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        c = self.config
        clips = torch.cat(batch.views)
        masks = key_area_mask(
            self.candidates(batch), self.encoder.grid, c.mask_ratio, mask_generator(), c.mask_rounding
        )
        visible = self.encoder(clips, mask=masks.hidden)
        prediction = self.decoder(visible, masks.masked, background=masks.background)
        patches = patchify(blur_target(clips, c.blur, c.blur_kernel), c.tubelet, c.patch)
        if c.norm_pix_loss:
            patches = normalized_pixel_targets(patches, c.tubelet, c.patch, c.in_chans)
        target = gather_tokens(patches, masks.masked, keep=True)
        # The mean over both clips' masked tokens: every row masks the same number of tokens.
        rec = F.mse_loss(prediction.float(), target.float())
        features = visible.mean(dim=1).float().chunk(len(batch.views))
        align = alignment_loss(features[0], features[1], c.align_tau, c.align)
        if c.loss_weighting == "code":
            loss = (1.0 - c.align_weight) * rec + c.align_weight * align
        else:
            loss = rec + c.align_weight * align
        return LossOutput(loss=loss, terms={"rec": float(rec.detach()), "align": float(align.detach())})

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
