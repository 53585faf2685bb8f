"""Image DINO on single frames (Caron et al. 2021): the stand-in for the RAD-DINO image baseline of seed 004.

Per step, ``frames_per_clip`` frames are drawn from every clip; each frame gives ``global_crops`` large and
``local_crops`` small random crops, all resized to the clip size inside the plugin (batched bilinear sampling).
The EMA teacher encodes the global crops, the student every crop; DINO's cross-entropy pairs every student crop
with every teacher crop but its own, against the centred, sharpened teacher. Downstream, a clip's embedding is the
mean of its frames' CLS tokens (:class:`echobench_plugins.image_dino.encoder.FrameViT`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from echobench.api import ClipBatch, Embedding, LossOutput, Method, MethodConfig, TrainState
from echobench.models.distill import (
    DINOHead,
    dino_loss,
    ema_update_,
    teacher_temperature,
    update_center,
    warmup_epochs_of_run,
)
from echobench.profiles import DISCOVER_BASELINE_PRETRAIN, DISCOVER_BASELINE_SOURCES
from echobench_plugins.image_dino.common import head_hidden_dim, require
from echobench_plugins.image_dino.encoder import FrameViT


@dataclass
class ImageDINOConfig(MethodConfig):
    """DINO's recipe on frames; the clip geometry defaults to DISCOVER's paper profile, the baseline it serves.

    DINO (ViT-S/16 recipe): 2 global crops of scale (0.4, 1), local crops of scale (0.05, 0.4), head 3-layer MLP
    (hidden ``head_hidden_dim``: ``None`` = DINO's 2048 capped at 4× the encoder width) → 256 → weight-normed
    ``head_out_dim``, τ_s = 0.1, τ_t 0.04 → 0.07 over the first 30 epochs as DINO's code, ``linspace(0.04, 0.07,
    30)[epoch]`` constant within an epoch and 0.07 from epoch 29 on (code: facebookresearch/dino main_dino.py
    ``DINOLoss``; here the 30 epochs are 30/400 of the run's epochs rounded to whole epochs, as DISCOVER's schedule,
    so both scale alike in shorter runs and a run under 6⅔ epochs has no warm-up), centre momentum 0.9 (EMA of the
    teacher logits), teacher EMA 0.996 → 1 (cosine), last layer frozen in the first epoch; ``pretrain_defaults``:
    lr 5e-4 × batch/256, wd 0.04 → 0.4 (cosine), AdamW betas (0.9, 0.999), 10 % warm-up.

    Not DINO's (echobench's choices): ``local_crops`` 2 resized to the global size (the ViT's fixed position table
    has one size; DINO uses 10 crops at 96²); crops only, no flips or colour jitter (left–right orientation is
    anatomy in echo); ``frames_per_clip`` 2 frames drawn per clip; ``head_out_dim`` 4096 (DINO 65536); ``tubelet``
    is unused (every frame is encoded alone; the token grid is ``(frames, H', W')``).
    """

    model: str = "vit_base"
    frames: int = 64
    stride: int = 3
    size: int = 112
    patch: int = 16
    tubelet: int = 1
    frames_per_clip: int = 2
    global_crops: int = 2
    local_crops: int = 2
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    head_out_dim: int = 4096
    head_hidden_dim: int | None = None
    head_bottleneck_dim: int = 256
    student_temp: float = 0.1
    teacher_temp_start: float = 0.04
    teacher_temp_end: float = 0.07
    teacher_temp_warmup_fraction: float = 30 / 400
    center_momentum: float = 0.9
    ema_momentum: float = 0.996
    freeze_last_layer_epochs: int = 1
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        require(self.frames >= 1, "frames", self.frames, ">= 1")
        require(1 <= self.frames_per_clip <= self.frames, "frames_per_clip", self.frames_per_clip, "in [1, frames]")
        require(self.global_crops >= 2, "global_crops", self.global_crops, ">= 2 (DINO pairs distinct crops)")
        require(self.local_crops >= 0, "local_crops", self.local_crops, ">= 0")
        for name in ("global_scale", "local_scale"):
            low, high = getattr(self, name)
            require(0.0 < low <= high <= 1.0, name, (low, high), "a range (low, high) with 0 < low <= high <= 1")
        for name in ("student_temp", "teacher_temp_start", "teacher_temp_end"):
            require(getattr(self, name) > 0, name, getattr(self, name), "> 0")
        require(self.head_out_dim >= 2, "head_out_dim", self.head_out_dim, ">= 2")
        require(0.0 <= self.ema_momentum <= 1.0, "ema_momentum", self.ema_momentum, "in [0, 1]")
        require(0.0 <= self.center_momentum <= 1.0, "center_momentum", self.center_momentum, "in [0, 1]")


def cosine_momentum(base: float, progress: float) -> float:
    """DINO's teacher momentum: ``1 − (1 − base)·(cos(π·p) + 1)/2``, from ``base`` at p = 0 to 1 at p = 1."""
    p = min(max(progress, 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * p) + 1.0) / 2.0


def random_resized_crops(
    images: torch.Tensor,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """One random crop per image ``(N, C, H, W)``, resized to ``H × W`` by bilinear sampling (RandomResizedCrop).

    A crop covers a fraction ``U(scale)`` of the image area with aspect ratio log-uniform in ``ratio``, side
    fractions capped at 1, at a uniform position inside the image.
    """
    n = images.shape[0]
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(n, generator=generator)
    aspect = log_ratio.exp()
    width = (area * aspect).sqrt().clamp(max=1.0)
    height = (area / aspect).sqrt().clamp(max=1.0)
    # Normalised coordinates span [-1, 1]: a crop of side fraction f has half-width f and its centre moves in ±(1 − f).
    cx = (1 - width) * (2 * torch.rand(n, generator=generator) - 1)
    cy = (1 - height) * (2 * torch.rand(n, generator=generator) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = width, cx, height, cy
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ImageDINO(Method):
    name = "image_dino"
    version = "0.2.0"
    Config = ImageDINOConfig
    pretrain_defaults: ClassVar[dict[str, Any]] = {
        "lr": 5e-4,
        "lr_scaling": "linear",
        "weight_decay": 0.04,
        "weight_decay_end": 0.4,
        "betas": (0.9, 0.999),
        "warmup_fraction": 0.1,
    }

    # The paper profile is DISCOVER's comparison, where image DINO stands in for RAD-DINO (Table 3).
    profile_overrides: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": {"pretrain": DISCOVER_BASELINE_PRETRAIN}
    }
    sources: ClassVar[dict[str, str]] = {
        k: v for k, v in DISCOVER_BASELINE_SOURCES.items() if k not in ("method.mask_ratio", "method.tubelet")
    }

    center: torch.Tensor

    def __init__(self, config: ImageDINOConfig) -> None:
        super().__init__(config)
        self.student = FrameViT.for_clips(
            config.model, config.frames, config.size, config.patch, config.in_chans, drop_path=config.drop_path
        )
        hidden = head_hidden_dim(config.head_hidden_dim, self.student.embed_dim)
        self.student_head = DINOHead(self.student.embed_dim, config.head_out_dim, hidden, config.head_bottleneck_dim)
        self.teacher = nn.ModuleDict({"encoder": copy.deepcopy(self.student), "head": copy.deepcopy(self.student_head)})
        self.teacher.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, config.head_out_dim))

    @property
    def encoder(self) -> FrameViT:  # type: ignore[override]
        return self.teacher["encoder"]  # type: ignore[return-value]

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        cfg = self.config
        clips = batch.clips
        b, c, t, h, w = clips.shape
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        picks = torch.rand(b, t, generator=generator).argsort(dim=1)[:, : cfg.frames_per_clip]
        frames = clips.transpose(1, 2)[torch.arange(b)[:, None], picks].reshape(-1, c, h, w)
        crops = [random_resized_crops(frames, cfg.global_scale, generator) for _ in range(cfg.global_crops)]
        crops += [random_resized_crops(frames, cfg.local_scale, generator) for _ in range(cfg.local_crops)]
        teacher_head, teacher_encoder = self.teacher["head"], self.teacher["encoder"]
        with torch.no_grad():
            teacher_cls = teacher_encoder.encode_frames(torch.cat(crops[: cfg.global_crops]))[:, 0]
            teacher_logits = teacher_head(teacher_cls).chunk(cfg.global_crops)
        student_cls = self.student.encode_frames(torch.cat(crops))[:, 0]
        student_logits = self.student_head(student_cls).chunk(len(crops))
        warmup = warmup_epochs_of_run(cfg.teacher_temp_warmup_fraction, state.total_steps, state.steps_per_epoch)
        tau_t = teacher_temperature(state.epoch, warmup, cfg.teacher_temp_start, cfg.teacher_temp_end)
        loss = dino_loss(student_logits, teacher_logits, self.center, cfg.student_temp, tau_t)
        self.center.copy_(update_center(self.center, teacher_logits, cfg.center_momentum))
        return LossOutput(loss=loss, terms={"dino": float(loss.detach()), "teacher_temp": tau_t})

    def on_before_optimizer_step(self, state: TrainState, optimizer: torch.optim.Optimizer) -> None:
        if state.epoch < self.config.freeze_last_layer_epochs:
            for param in self.student_head.last_layer_parameters():
                param.grad = None

    def after_step(self, state: TrainState) -> None:
        momentum = cosine_momentum(self.config.ema_momentum, state.progress)
        ema_update_(self.teacher["encoder"], self.student, momentum)
        ema_update_(self.teacher["head"], self.student_head, momentum)

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
