"""DISCOVER (Mishra et al., seed 004): video self-distillation + masked image self-distillation + semantic cluster
distillation (SCD), as specified in METHODS.md.

Per step, on clips ``(B, C, T, H, W)``:

- video branch (Eqs. 1–4): the EMA teacher encodes the full clip; the student encodes ``video_views`` masked
  views (space-time random masks, distinct per view); heads + softmax, cross-entropy of each student view against
  the centred, sharpened teacher (:func:`echobench.models.distill.dino_loss`);
- image branch (Eqs. 5–6): the same on individual frames with ``image_views`` masked views per frame;
- SCD (Eqs. 7–9): the decoder ψ predicts features at the masked tokens of the first student view from its visible
  tokens; the image teacher's patch features of the same frames (averaged over each tubelet's frames, detached)
  are the targets; :func:`echobench_plugins.discover.losses.scd_loss` aligns their Sinkhorn cluster assignments.

The loss is the sum of the three terms. Teachers follow their students by EMA after every optimiser step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from echobench.api import ClipBatch, Embedding, LossOutput, Method, MethodConfig, TrainState
from echobench.models.decoder import MAEDecoder
from echobench.models.distill import (
    DINOHead,
    dino_loss,
    ema_update_,
    teacher_temperature,
    update_center,
    warmup_epochs_of_run,
)
from echobench.models.masking import gather_tokens, random_mask
from echobench.models.vit import VideoViT
from echobench.profiles import DISCOVER_BASELINE_PRETRAIN
from echobench_plugins.discover.losses import CenterSource, center_batch_values, scd_loss, tubelet_average
from echobench_plugins.image_dino.common import head_hidden_dim, require
from echobench_plugins.image_dino.encoder import FrameViT


@dataclass
class DiscoverConfig(MethodConfig):
    """DISCOVER's hyperparameters; defaults are the paper profile.

    Paper: 64 frames at stride 3, 112², tubelet 2×16×16, ViT-B; M = N = 4 masked views, video mask ratio 0.9; EMA
    λ = 0.996; τ_s = 0.1, τ_t 0.04 → 0.07 over the first 30 of 400 epochs; K = 3000 prototypes, τ = 0.1, Sinkhorn
    ε = 0.05 with 10 iterations; soft SCD targets (``scd_targets="hard"`` is the code's switch).

    ``teacher_temp_warmup_fraction`` = 30/400: the warm-up is the paper's 30 epochs as a fraction of the run's
    epochs (``total_steps / steps_per_epoch``), rounded to whole epochs (30 of 400; 3 of 40; none in a run shorter
    than 6⅔ epochs, such as the quick profile's), so a shorter run warms up over about the same share of its
    training. Within the warm-up τ_t is DISCOVER's and DINO's per-epoch ``linspace(0.04, 0.07, 30)[epoch]``,
    constant within an epoch and 0.07 from epoch 29 on (code: mdivyanshu97/DISCOVR models/modeling_pretrain.py
    ``teacher_temp_schedule``; :func:`echobench.models.distill.teacher_temperature`), at ``TrainState.epoch``.

    Switches for DISCOVER's released code (mdivyanshu97/DISCOVR, models/modeling_pretrain.py
    ``PretrainVisionTransformer``), where the paper is silent and echobench follows DINO: ``center_from=
    probabilities`` with ``center_momentum=0.8`` updates the centre from the teacher's centred, sharpened
    probabilities (``update_center`` is called after the softmax; the constructor's ``center_momentum=0.8`` is used,
    run_mae_pretraining.py's ``--center_momentum 0.9`` is never passed on); echobench's default is DINO's EMA of the
    logits with momentum 0.9. ``image_loss_scale=per_256_frames`` multiplies the image self-distillation loss by
    256 / (frames it averages over), the code's ``grad_scale = 256.0 / imgs_batch.shape[0]`` in
    ``process_image_dino_batch`` (the code chunks a GPU's B·T frames by 1024 and keeps the last chunk's loss; at
    batch 8 × 64 frames that is all 512 frames, a factor 0.5); echobench's default leaves it unscaled.

    Other differences of the released code that echobench does not follow (code: mdivyanshu97/DISCOVR
    config/run_pretraining.sh, models/modeling_pretrain.py, models/masking_generator.py): the teacher EMA momentum
    is the constructor's constant 0.99 (``--momentum_teacher 0.996`` is not passed on; echobench: the paper's 0.996);
    the video views are tube masks (one spatial mask of ``int(0.9·H'W')`` positions repeated at every t',
    ``MultiLocalMaskingGenerator``), where echobench draws the paper's space-time random masks; the image students
    mask ``int(0.9·H'W')`` patches (``--mask_ratio 0.9``; echobench's ``image_mask_ratio`` is 0.5); the heads
    output 16384 dimensions (``--dino_out_dim 16384``) and the last layer is never frozen; the SCD branch
    decodes a separate fifth masked view, scores every decoder output (visible and masked tokens) against image
    teacher tokens taken in another order (``[:, ::2]`` of the frame-major token list), standardises the image
    features per channel over each frame's patches, uses hard argmax targets (the image-side term carries no
    gradient) and trains the prototypes from the decoder side, renormalising them in place each step; the lr is
    1.5e-4 × batch/256 with batch 16.

    Not in the paper (echobench's choices):

    - ``head="dino"``: DINO heads (3-layer MLP, ``head_hidden_dim``, ``head_bottleneck_dim`` bottleneck, L2-norm,
      weight-normalised last layer to ``head_out_dim``; ``head_hidden_dim`` ``None`` = DINO's 2048 capped at 4× the
      encoder width, so a ViT-T's heads do not outweigh it) with DINO's teacher centring (EMA of the logits,
      ``center_momentum`` 0.9) and the last layer frozen for ``freeze_last_layer_epochs``; the paper's literal
      linear heads without centring (Eq. 3) are ``head="linear", center=False``. ``head_out_dim`` (4096) is not
      given in the paper.
    - ``image_mask_ratio`` 0.5 (not given); image masks are uniform random over a frame's patches.
    - ``image_frames``: frames per clip the image self-distillation loss uses, drawn at random from the frames the
      image teacher encodes (``None`` = all of them, the paper's reading). A cost lever.
    - ``scd_frames_per_tubelet``: frames of each tubelet the image teacher encodes, drawn at random, whose patch
      features are averaged into the SCD target (``None`` = all ``tubelet`` frames). A cost lever.
    - the decoder ψ: a VideoMAE-style transformer decoder (:class:`echobench.models.decoder.MAEDecoder`) of
      ``decoder_depth`` blocks, width ``decoder_dim`` (default half the encoder's) predicting image-feature-sized
      vectors; SCD uses the first masked student view ("a masked video input").
    - SCD targets of a video token: the mean of the image teacher's tokens at its spatial patch over its
      ``tubelet`` frames. Sinkhorn on raw cosines (SwAV's convention), CE on cosines/τ.
    - the total loss is the unweighted sum of the three terms (the paper gives no weights).
    - ``encode_from``: downstream features come from the video teacher (default) or student.

    Quick profile only (``Discover.profile_overrides["quick"]``, not in the paper): at the harness's quick geometry
    (ViT-T, 16 frames of 64², tubelet 4, batch 8) a paper-sized step costs 4–35× a VideoMAE step on 2 shared CPU
    cores (the ratio moves with the machine's load), mostly the image student's 4 masked views of all 128 frames,
    the image teacher on all 128 frames and Sinkhorn over K = 3000 prototypes. Towards the cold-run budget of
    ``echobench run`` on 2 cores, the quick profile sets (``benchmarks/discover_quick_cost.py`` measures the
    effect: about 3–7× a VideoMAE step remain, of which the two teachers' full-input forward passes alone are
    about 1.8×):

    - ``video_views`` 1 and ``image_views`` 1 (M = N = 1 masked view instead of 4). Going from 2 views to 1 made
      100 quick steps take 88 s instead of 105 s and left validation where it was, over pretraining seeds 0–2:
      kNN ``ef_anomaly`` AUROC 0.791 / 0.783 / 0.717 against 0.798 / 0.776 / 0.717, linear ``ef`` R²
      0.584 / 0.598 / 0.591 against 0.562 / 0.592 / 0.592. With 2 views the cold ``echobench run`` took 202 s on
      a slow day of the 2-core machine; its budget is 180 s;
    - ``image_frames`` 1: one frame per clip for the image self-distillation loss;
    - ``scd_frames_per_tubelet`` 1: the SCD target of a video token is the image teacher's feature of one random
      frame of its tubelet, so the image teacher encodes 4 frames per clip instead of 16;
    - ``scd_prototypes`` 500: K scaled with the masked tokens per batch (3000 × 1843/11290 at the paper's
      geometry), so Sinkhorn still spreads about 4 tokens over each prototype;
    - ``sinkhorn_iters`` 3: SwAV's default instead of the paper's 10;
    - ``decoder_depth`` 2 instead of 4;
    - ``freeze_last_layer_epochs`` 0: the paper's one epoch is 1/400 of its run (DINO's 1 of at least 100) but half
      of the quick run's 100 steps (one pass over 399 videos at batch 8). Validation over pretraining seeds 0–2
      (``benchmarks/synthecho_signal.py``): kNN ``ef_anomaly`` AUROC 0.764 vs 0.746 with one epoch, linear ``ef``
      R² 0.582 vs 0.580.

    All three loss terms, both teacher–student pairs (full-input EMA teachers, masked students) and Sinkhorn SCD
    stay. The τ_t warm-up is a fraction of the run and needs no quick value: rounded to whole epochs, the quick
    run's 30/400 share is none, so τ_t is 0.07 from the first step.
    """

    model: str = "vit_base"
    frames: int = 64
    stride: int = 3
    size: int = 112
    patch: int = 16
    tubelet: int = 2
    video_views: int = 4
    video_mask_ratio: float = 0.9
    image_views: int = 4
    image_mask_ratio: float = 0.5
    image_frames: int | None = None
    scd_frames_per_tubelet: int | None = None
    head: Literal["dino", "linear"] = "dino"
    center: bool = True
    head_out_dim: int = 4096
    head_hidden_dim: int | None = None
    head_bottleneck_dim: int = 256
    student_temp: float = 0.1
    teacher_temp_start: float = 0.04
    teacher_temp_end: float = 0.07
    teacher_temp_warmup_fraction: float = 30 / 400
    center_momentum: float = 0.9
    center_from: CenterSource = "logits"
    image_loss_scale: Literal["none", "per_256_frames"] = "none"
    ema_momentum: float = 0.996
    freeze_last_layer_epochs: int = 1
    scd_prototypes: int = 3000
    scd_temp: float = 0.1
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 10
    scd_targets: Literal["soft", "hard"] = "soft"
    decoder_dim: int | None = None
    decoder_depth: int = 4
    decoder_heads: int | None = None
    encode_from: Literal["teacher", "student"] = "teacher"
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        require(self.frames >= 1 and self.tubelet >= 1, "frames", self.frames, ">= 1 (and tubelet >= 1)")
        require(self.frames % self.tubelet == 0, "frames", self.frames, f"divisible by tubelet {self.tubelet}")
        require(self.video_views >= 1, "video_views", self.video_views, ">= 1 (M masked student views)")
        require(self.image_views >= 1, "image_views", self.image_views, ">= 1 (N masked student views)")
        for name in ("video_mask_ratio", "image_mask_ratio"):
            ratio = getattr(self, name)
            require(0.0 < ratio < 1.0, name, ratio, "in (0, 1)")
        per_tubelet = self.scd_frames_per_tubelet
        if per_tubelet is not None:
            rule = f"in [1, tubelet {self.tubelet}] or null"
            require(1 <= per_tubelet <= self.tubelet, "scd_frames_per_tubelet", per_tubelet, rule)
        if self.image_frames is not None:
            encoded = self.image_teacher_frames
            rule = f"in [1, {encoded}] (the frames the image teacher encodes) or null"
            require(1 <= self.image_frames <= encoded, "image_frames", self.image_frames, rule)
        for name in ("student_temp", "teacher_temp_start", "teacher_temp_end", "scd_temp", "sinkhorn_eps"):
            value = getattr(self, name)
            require(value > 0, name, value, "> 0")
        warmup = self.teacher_temp_warmup_fraction
        require(warmup >= 0, "teacher_temp_warmup_fraction", warmup, ">= 0")
        require(self.scd_prototypes >= 2, "scd_prototypes", self.scd_prototypes, ">= 2 (K prototypes)")
        require(self.head_out_dim >= 2, "head_out_dim", self.head_out_dim, ">= 2")
        require(self.sinkhorn_iters >= 1, "sinkhorn_iters", self.sinkhorn_iters, ">= 1")
        require(0.0 <= self.ema_momentum <= 1.0, "ema_momentum", self.ema_momentum, "in [0, 1]")
        require(0.0 <= self.center_momentum <= 1.0, "center_momentum", self.center_momentum, "in [0, 1]")
        require(self.freeze_last_layer_epochs >= 0, "freeze_last_layer_epochs", self.freeze_last_layer_epochs, ">= 0")
        if self.head_hidden_dim is not None:
            require(self.head_hidden_dim >= 1, "head_hidden_dim", self.head_hidden_dim, ">= 1 or null")
        require(self.decoder_depth >= 1, "decoder_depth", self.decoder_depth, ">= 1")

    @property
    def image_teacher_frames(self) -> int:
        """Frames per clip the image teacher encodes: ``scd_frames_per_tubelet`` of each tubelet's frames."""
        return self.frames // self.tubelet * (self.scd_frames_per_tubelet or self.tubelet)


class Branch(nn.Module):
    """An encoder and its projection head: one student or one teacher (EMA pairs match by parameter name)."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head


def make_head(config: DiscoverConfig, in_dim: int) -> nn.Module:
    if config.head == "linear":
        return nn.Linear(in_dim, config.head_out_dim, bias=False)
    return DINOHead(
        in_dim, config.head_out_dim, head_hidden_dim(config.head_hidden_dim, in_dim), config.head_bottleneck_dim
    )


def teacher_of(student: Branch) -> Branch:
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher


class Discover(Method):
    name = "discover"
    version = "0.2.0"
    Config = DiscoverConfig
    # Paper (Appendix C): batch 8, lr 1.5e-4, wd 0.05, 400 epochs with 40 warm-up; a run in steps warms up over
    # the same share of its steps.
    pretrain_defaults: ClassVar[dict[str, Any]] = {**DISCOVER_BASELINE_PRETRAIN, "warmup_fraction": 40 / 400}
    sources: ClassVar[dict[str, str]] = {
        "pretrain.epochs": "paper: Appendix C",
        "pretrain.warmup_epochs": "paper: Appendix C",
        "pretrain.batch_size": "paper: Appendix C",
        "pretrain.lr": "paper: Appendix C",
        "pretrain.lr_scaling": "paper: Appendix C (lr given without a batch rule)",
        "pretrain.weight_decay": "paper: Appendix C",
        "pretrain.min_lr_ratio": "choice: the paper gives no final lr",
        "method.model": "paper: Sec. 4 Evaluation (ViT base)",
        "method.frames": "paper: Appendix C (64-frame clips)",
        "method.stride": "paper: Appendix C (stride 3)",
        "method.size": "paper: Appendix C (112x112)",
        "method.patch": "paper: Sec. 4 Evaluation (2x16x16 tubes)",
        "method.tubelet": "paper: Sec. 4 Evaluation (2x16x16 tubes)",
        "method.video_mask_ratio": "paper: Sec. 4 Evaluation (90 % masking)",
    }
    # Quick profile only, not in the paper: see DiscoverConfig (cost on 2 CPU cores).
    profile_overrides: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "quick": {
            "method": {
                "video_views": 1,
                "image_views": 1,
                "image_frames": 1,
                "scd_frames_per_tubelet": 1,
                "scd_prototypes": 500,
                "sinkhorn_iters": 3,
                "decoder_depth": 2,
                "freeze_last_layer_epochs": 0,
            }
        }
    }

    video_center: torch.Tensor
    image_center: torch.Tensor

    def __init__(self, config: DiscoverConfig) -> None:
        super().__init__(config)
        video = VideoViT.from_config(config, pos="sincos", cls_token=True, drop_path=config.drop_path)
        image = FrameViT.for_clips(
            config.model, config.frames, config.size, config.patch, config.in_chans, drop_path=config.drop_path
        )
        self.video_student = Branch(video, make_head(config, video.embed_dim))
        self.video_teacher = teacher_of(self.video_student)
        self.image_student = Branch(image, make_head(config, image.embed_dim))
        self.image_teacher = teacher_of(self.image_student)
        decoder_dim = config.decoder_dim or video.embed_dim // 2
        self.decoder = MAEDecoder(
            encoder_dim=video.embed_dim,
            decoder_dim=decoder_dim,
            depth=config.decoder_depth,
            num_heads=config.decoder_heads or max(1, decoder_dim // 64),
            num_patches=video.num_patches,
            out_dim=image.embed_dim,
        )
        # Unit rows (the loss normalises them anyway): AdamW's per-coordinate step of about lr stays small next to
        # entries of about 1/sqrt(D), where a 0.02-scale init would let each step turn the prototypes sharply.
        self.prototypes = nn.Parameter(F.normalize(torch.randn(config.scd_prototypes, image.embed_dim), dim=1))
        self.register_buffer("video_center", torch.zeros(1, config.head_out_dim))
        self.register_buffer("image_center", torch.zeros(1, config.head_out_dim))

    @property
    def encoder(self) -> VideoViT:  # type: ignore[override]
        branch = self.video_teacher if self.config.encode_from == "teacher" else self.video_student
        return branch.encoder  # type: ignore[return-value]

    def no_weight_decay(self) -> set[str]:
        # The loss sees only normalised prototypes: decay would shrink their norm and so raise their effective lr.
        return {"prototypes"}

    def teacher_temperature(self, state: TrainState) -> float:
        cfg = self.config
        warmup = warmup_epochs_of_run(cfg.teacher_temp_warmup_fraction, state.total_steps, state.steps_per_epoch)
        return teacher_temperature(state.epoch, warmup, cfg.teacher_temp_start, cfg.teacher_temp_end)

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        cfg = self.config
        clips = batch.clips
        b, c, t, h, w = clips.shape
        # The harness seeds the global RNG per step; deriving the mask generator from it keeps resume exact.
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        tau_t = self.teacher_temperature(state)

        with torch.no_grad():
            video_teacher_logits = self.video_teacher.head(self.video_teacher.encoder(clips)[:, 0])
            # (B·F, C, H, W): the F = image_teacher_frames frames of each clip, tubelet by tubelet.
            encoded = self._teacher_frames(b, t, generator).to(clips.device)
            frames = clips.transpose(1, 2)[torch.arange(b, device=clips.device)[:, None], encoded]
            frames = frames.reshape(-1, c, h, w)
            image_teacher_out = self.image_teacher.encoder.encode_frames(frames)

        video_tokens = self.video_student.encoder.embed(clips)
        video_masks = random_mask(cfg.video_views * b, video_tokens.shape[1], cfg.video_mask_ratio, generator)
        video_masks = video_masks.to(clips.device)
        visible = gather_tokens(video_tokens.repeat(cfg.video_views, 1, 1), video_masks)
        video_out = self.video_student.encoder.forward_tokens(visible)
        video_student_logits = self.video_student.head(video_out[:, 0]).chunk(cfg.video_views)
        loss_video = dino_loss(video_student_logits, video_teacher_logits, self.video_center, cfg.student_temp, tau_t)

        chosen = self._image_frames(b, encoded.shape[1], generator).to(clips.device)
        image_teacher_logits = self.image_teacher.head(image_teacher_out[chosen, 0])
        frame_tokens = self.image_student.encoder.frame_embed(frames[chosen])
        image_masks = random_mask(cfg.image_views * len(chosen), frame_tokens.shape[1], cfg.image_mask_ratio, generator)
        image_visible = gather_tokens(frame_tokens.repeat(cfg.image_views, 1, 1), image_masks.to(clips.device))
        image_out = self.image_student.encoder.forward_tokens(image_visible)
        image_student_logits = self.image_student.head(image_out[:, 0]).chunk(cfg.image_views)
        loss_image = dino_loss(image_student_logits, image_teacher_logits, self.image_center, cfg.student_temp, tau_t)
        if cfg.image_loss_scale == "per_256_frames":
            loss_image = loss_image * (256.0 / len(chosen))

        first_view = video_masks[:b]
        predicted = self.decoder(video_out[:b, 1:], first_view)
        frame_features = image_teacher_out[:, 1:].reshape(b, encoded.shape[1], -1, image_teacher_out.shape[-1])
        per_tubelet = cfg.scd_frames_per_tubelet or cfg.tubelet
        targets = gather_tokens(tubelet_average(frame_features, per_tubelet), first_view, keep=True)
        loss_scd = scd_loss(
            predicted,
            targets,
            self.prototypes,
            tau=cfg.scd_temp,
            eps=cfg.sinkhorn_eps,
            iters=cfg.sinkhorn_iters,
            hard=cfg.scd_targets == "hard",
        )

        if cfg.center:
            pairs = ((self.video_center, video_teacher_logits), (self.image_center, image_teacher_logits))
            for center, logits in pairs:
                values = center_batch_values(logits, center, tau_t, cfg.center_from)
                center.copy_(update_center(center, values, cfg.center_momentum))
        loss = loss_video + loss_image + loss_scd
        terms = {
            "video_distill": float(loss_video.detach()),
            "image_distill": float(loss_image.detach()),
            "scd": float(loss_scd.detach()),
            "teacher_temp": tau_t,
        }
        return LossOutput(loss=loss, terms=terms)

    def _teacher_frames(self, batch: int, frames: int, generator: torch.Generator) -> torch.Tensor:
        """``(batch, image_teacher_frames)`` frame indices per clip the image teacher encodes: every frame, or
        ``scd_frames_per_tubelet`` distinct frames drawn at random within each tubelet, grouped by tubelet."""
        tubelet, per_tubelet = self.config.tubelet, self.config.scd_frames_per_tubelet
        if per_tubelet is None or per_tubelet == tubelet:
            return torch.arange(frames).expand(batch, frames)
        offsets = torch.rand(batch, frames // tubelet, tubelet, generator=generator).argsort(dim=2)[..., :per_tubelet]
        starts = torch.arange(0, frames, tubelet)[None, :, None]
        return (starts + offsets).reshape(batch, -1)

    def _image_frames(self, batch: int, frames: int, generator: torch.Generator) -> torch.Tensor:
        """Indices into the ``batch·frames`` encoded frames of the frames the image self-distillation uses."""
        every = torch.arange(batch * frames)
        if self.config.image_frames is None or self.config.image_frames == frames:
            return every
        picks = torch.rand(batch, frames, generator=generator).argsort(dim=1)[:, : self.config.image_frames]
        return (picks + torch.arange(batch)[:, None] * frames).flatten()

    def on_before_optimizer_step(self, state: TrainState, optimizer: torch.optim.Optimizer) -> None:
        # DINO's stabiliser: the weight-normalised prototypes of the heads stay fixed during the first epoch(s).
        if self.config.head != "dino" or state.epoch >= self.config.freeze_last_layer_epochs:
            return
        for branch in (self.video_student, self.image_student):
            assert isinstance(branch.head, DINOHead)
            for param in branch.head.last_layer_parameters():
                param.grad = None

    def after_step(self, state: TrainState) -> None:
        ema_update_(self.video_teacher, self.video_student, self.config.ema_momentum)
        ema_update_(self.image_teacher, self.image_student, self.config.ema_momentum)

    def encode(self, clips: torch.Tensor) -> Embedding:
        return self.encoder.forward_features(clips)
