"""VideoMAE (Tong et al.; the backbone recipe of EchoVisionFM), as specified in METHODS.md.

The encoder sees only the ~10 % of tubelets left visible by tube masking; a narrow decoder reconstructs every masked
tubelet's normalised pixels, and the loss is the MSE over masked tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from echobench.api import ClipBatch, Embedding, LossOutput, Method, MethodConfig, TrainState
from echobench.distributed import batch_rows
from echobench.models.decoder import MAEDecoder
from echobench.models.masking import gather_tokens, tube_mask
from echobench.models.patches import normalized_pixel_targets, patchify
from echobench.models.vit import VideoViT


@dataclass
class VideoMAEConfig(MethodConfig):
    model: str = "vit_small"
    mask_ratio: float = 0.9
    decoder_dim: int | None = None
    decoder_depth: int = 4
    decoder_heads: int | None = None
    norm_pix_loss: bool = True
    drop_path: float = 0.0
    #: ``echobench tune``'s default search (not in the paper): VideoMAE's ablated mask ratios and a decade of lr.
    search_space: ClassVar[dict[str, Any]] = {
        "mask_ratio": {"low": 0.75, "high": 0.95},
        "pretrain.lr": {"low": 5e-5, "high": 5e-4, "log": True},
    }


class VideoMAE(Method):
    name = "videomae"
    version = "0.1.0"
    Config = VideoMAEConfig
    pretrain_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1.5e-4,
        "lr_scaling": "linear",
        "betas": (0.9, 0.95),
        "weight_decay": 0.05,
    }

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
            out_dim=config.tubelet * config.patch * config.patch * config.in_chans,
        )

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        clips = batch.clips
        cfg = self.config
        # The harness seeds the global RNG per step; deriving the mask generator from it keeps resume exact.
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        # Masks drawn for the global batch: a distributed run masks each clip as the single-process run does.
        total, rows = batch_rows(clips.shape[0])
        mask = tube_mask(total, self.encoder.grid, cfg.mask_ratio, generator)[rows].to(clips.device)
        visible = self.encoder(clips, mask=mask)
        prediction = self.decoder(visible, mask)
        patches = patchify(clips, cfg.tubelet, cfg.patch)
        if cfg.norm_pix_loss:
            patches = normalized_pixel_targets(patches, cfg.tubelet, cfg.patch, cfg.in_chans)
        target = gather_tokens(patches, mask, keep=True)
        loss = F.mse_loss(prediction.float(), target.float())
        return LossOutput(loss=loss, terms={"mse_masked": float(loss.detach())})

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
