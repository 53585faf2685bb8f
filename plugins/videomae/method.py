"""VideoMAE (Tong et al.; the backbone recipe of EchoVisionFM), as specified in METHODS.md.

The encoder sees only the ~10 % of tubelets left visible by tube masking; a narrow decoder reconstructs every masked
tubelet's normalised pixels, and the loss is the MSE over masked tokens only.

Variants that change only the mask (MGMAE) or the target (SIGMA) subclass :class:`VideoMAE` and override
:meth:`VideoMAE.draw_mask` or :meth:`VideoMAE.prediction_dim` and ``pretrain_step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from echobench.api import ClipBatch, Embedding, LossOutput, Method, MethodConfig, TrainState
from echobench.config import ranged
from echobench.distributed import batch_rows
from echobench.models.decoder import MAEDecoder
from echobench.models.masking import MaskRounding, gather_tokens, tube_mask
from echobench.models.patches import normalized_pixel_targets, patchify
from echobench.models.vit import VideoViT
from echobench.profiles import DISCOVER_BASELINE_METHOD, DISCOVER_BASELINE_PRETRAIN, DISCOVER_BASELINE_SOURCES

#: VideoMAE's optimiser (lr 1.5e-4 per 256 clips, AdamW betas (0.9, 0.95), weight decay 0.05), shared by the
#: masked-modelling plugins that follow its recipe.
MAE_PRETRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1.5e-4,
    "lr_scaling": "linear",
    "betas": (0.9, 0.95),
    "weight_decay": 0.05,
}
#: Temporal MAE's recipe (paper 000, Sec. 3): MAE's optimiser "adjusted by the batch size", warm-up over the
#: first 200 epochs then cosine. Not in the paper: batch 64, and 400 epochs in place of its early stopping on the
#: reconstruction loss (patience 75 epochs), which needs no fixed length.
TEMPORAL_MAE_PRETRAIN_DEFAULTS: dict[str, Any] = {
    **MAE_PRETRAIN_DEFAULTS,
    "batch_size": 64,
    "epochs": 400,
    "warmup_epochs": 200,
}
#: Where :data:`TEMPORAL_MAE_PRETRAIN_DEFAULTS` come from (``Method.sources``).
TEMPORAL_MAE_SOURCES: dict[str, str] = {
    "pretrain.lr": "paper 000 Sec. 3: base lr 1.5e-4",
    "pretrain.lr_scaling": "paper 000 Sec. 3: 'adjusted by the batch size'",
    "pretrain.weight_decay": "paper 000 Sec. 3: 0.05",
    "pretrain.warmup_epochs": "paper 000 Sec. 3: warm-up over the first 200 epochs",
    "pretrain.epochs": "choice: a fixed 400 epochs for the paper's early stopping (patience 75 epochs)",
    "pretrain.batch_size": "choice: the paper gives no batch size",
    "method.frames": "paper 000 Sec. 3: 10 frames over one second",
    "method.size": "paper 000 Sec. 3: 32x32",
    "method.model": "paper 000 Sec. 3: ViT-T",
}


@dataclass
class VideoMAEConfig(MethodConfig):
    """VideoMAE's hyperparameters (METHODS.md): tube masking at 0.9, decoder depth 4 at half the encoder's width,
    per-patch normalised pixel targets.

    ``mask_rounding`` = ``"masked"``: ``int(ratio·H'W')`` positions masked per sample (code: MCG-NJU/VideoMAE
    masking_generator.py ``TubeMaskingGenerator``); ``"visible"`` keeps ``int(H'W'·(1 − ratio))`` visible instead,
    the rule of MGMAE's and EchoCardMAE's code (:data:`echobench.models.masking.MaskRounding`).
    """

    model: str = "vit_small"
    mask_ratio: float = ranged(0.9, gt=0, lt=1)
    mask_rounding: MaskRounding = "masked"
    decoder_dim: int | None = ranged(None, ge=1)
    decoder_depth: int = ranged(4, ge=1)
    decoder_heads: int | None = ranged(None, ge=1)
    norm_pix_loss: bool = True
    drop_path: float = ranged(0.0, ge=0, lt=1)
    #: ``echobench tune``'s default search (not in the paper): VideoMAE's ablated mask ratios and a decade of lr.
    search_space: ClassVar[dict[str, Any]] = {
        "mask_ratio": {"low": 0.75, "high": 0.95},
        "pretrain.lr": {"low": 5e-5, "high": 5e-4, "log": True},
    }


#: The paper profile of DISCOVER's video baselines (VideoMAE, SIGMA, MGMAE): the geometry and recipe of the seed
#: paper that compares against them (:data:`echobench.profiles.DISCOVER_BASELINE_METHOD`).
DISCOVER_BASELINE_PROFILE: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"method": {**DISCOVER_BASELINE_METHOD, "mask_ratio": 0.9}, "pretrain": DISCOVER_BASELINE_PRETRAIN}
}


class VideoMAE(Method):
    name = "videomae"
    version = "0.1.0"
    Config = VideoMAEConfig
    pretrain_defaults: ClassVar[dict[str, Any]] = MAE_PRETRAIN_DEFAULTS
    profile_overrides: ClassVar[dict[str, dict[str, dict[str, Any]]]] = DISCOVER_BASELINE_PROFILE
    sources: ClassVar[dict[str, str]] = DISCOVER_BASELINE_SOURCES

    def __init__(self, config: VideoMAEConfig) -> None:
        super().__init__(config)
        if not 0.0 < config.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {config.mask_ratio}")
        self.encoder = VideoViT.from_config(config, pos="sincos", drop_path=config.drop_path)
        # VideoMAE's decoders are half the encoder's width (192 for ViT-S, 384 for ViT-B) with 64-wide heads.
        decoder_dim = config.decoder_dim or self.encoder.embed_dim // 2
        decoder_heads = config.decoder_heads or max(1, decoder_dim // 64)
        self.decoder = MAEDecoder(
            encoder_dim=self.encoder.embed_dim,
            decoder_dim=decoder_dim,
            depth=config.decoder_depth,
            num_heads=decoder_heads,
            num_patches=self.encoder.num_patches,
            out_dim=self.prediction_dim(),
        )

    def prediction_dim(self) -> int:
        """Values the decoder predicts per masked token: the tubelet's pixels."""
        cfg = self.config
        return cfg.tubelet * cfg.patch * cfg.patch * cfg.in_chans

    def draw_mask(self, batch: ClipBatch) -> torch.Tensor:
        """Tube mask ``(B, N)`` for the batch, True = hidden from the encoder."""
        # The harness seeds the global RNG per step; deriving the mask generator from it keeps resume exact.
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        # Masks drawn for the global batch: a distributed run masks each clip as the single-process run does.
        total, rows = batch_rows(batch.clips.shape[0])
        cfg = self.config
        return tube_mask(total, self.encoder.grid, cfg.mask_ratio, generator, rounding=cfg.mask_rounding)[rows]

    def pixel_patches(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-token pixel vectors ``(B, N, prediction_dim)``, normalised per patch when ``norm_pix_loss``."""
        cfg = self.config
        patches = patchify(clips, cfg.tubelet, cfg.patch)
        if cfg.norm_pix_loss:
            patches = normalized_pixel_targets(patches, cfg.tubelet, cfg.patch, cfg.in_chans)
        return patches

    def predict_masked(self, clips: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Decoder predictions ``(B, N_masked, prediction_dim)`` from the visible tokens, masked tokens in t-major
        order (aligned with ``gather_tokens(·, mask, keep=True)``)."""
        return self.decoder(self.encoder(clips, mask=mask), mask)

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        clips = batch.clips
        mask = self.draw_mask(batch).to(clips.device)
        prediction = self.predict_masked(clips, mask)
        target = gather_tokens(self.pixel_patches(clips), mask, keep=True)
        loss = F.mse_loss(prediction.float(), target.float())
        return LossOutput(loss=loss, terms={"mse_masked": float(loss.detach())})

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
