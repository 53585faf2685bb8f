"""The Method contract: the one interface a method author learns.

A method owns its modules (students, EMA teachers, decoders, prototypes) and computes its loss; the harness owns
data, clip sampling, the optimiser loop, checkpoints, the embedding cache and every protocol. Only ``encoder`` and
``encode`` are used downstream.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from echobench.config import ranged

StartMode = Literal["random", "fixed", "evenly", "all", "ed_es", "traced"]


FrameControl = Literal["none", "shuffle", "freeze"]
FRAME_CONTROLS: tuple[str, ...] = ("none", "shuffle", "freeze")


@dataclass(frozen=True)
class ClipSpec:
    """What a method needs from the loader.

    ``start`` chooses clip start frames: ``random`` (training), ``fixed`` (``start_frame``), ``evenly``
    (``num_clips`` evenly spaced starts), ``all`` (every start at ``frames * stride`` spacing), ``ed_es``
    (``frames`` indices spread evenly from the end-diastolic to the end-systolic frame: Temporal MAE's oracle),
    ``traced`` (two clips per video with LV tracings, clip 0 holding the traced ED frame and clip 1 the traced ES
    frame, each on the clip's stride lattice; videos without tracings give no clip — segmentation), ``uniform``
    (one clip of ``frames`` indices ``round(linspace(0, n - 1, frames))`` over the whole video: EchoVisionFM's
    "uniformly sampled 16 frames").
    ``clips_per_video`` > 1 samples that many clips of the same video with distinct random starts whenever the
    video is long enough (EchoCardMAE's temporal-invariant alignment).

    ``seconds`` samples by time instead of by frame stride: ``frames`` frames evenly over ``seconds`` of each
    video, using its own fps (Temporal MAE's "10 frames over one second"); ``stride`` is then unused.
    ``tasks`` names the task labels a method needs in its batches (``ClipBatch.labels``; supervised methods).
    ``frame_control`` (test clips only: :data:`echobench.context.CONTROLLED_SPLIT`) is a temporal control:
    ``shuffle`` presents each clip's frames in a fixed random order (frame order is lost; the set of frames is
    kept), ``freeze`` repeats the clip's first frame (all motion is lost; what one frame shows is kept).
    """

    frames: int = 16
    stride: int = 2
    size: int = 112
    clips_per_video: int = 1
    start: StartMode = "random"
    start_frame: int = 0
    num_clips: int = 1
    needs_ed_es: bool = False
    seconds: float | None = None
    tasks: tuple[str, ...] = ()
    frame_control: FrameControl = "none"

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1 or self.size < 8:
            raise ValueError(f"invalid clip spec {self}: frames and stride must be >= 1 and size >= 8")
        if self.clips_per_video < 1 or self.num_clips < 1:
            raise ValueError(f"invalid clip spec {self}: clips_per_video and num_clips must be >= 1")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"invalid clip spec {self}: seconds must be > 0")
        if self.frame_control not in FRAME_CONTROLS:
            raise ValueError(f"invalid clip spec {self}: frame_control must be one of {FRAME_CONTROLS}")
        if self.seconds is not None and self.start == "traced":
            raise ValueError(f"invalid clip spec {self}: traced clips sit on the stride lattice; unset seconds")

    @property
    def span(self) -> int:
        """Frames of the source video covered by one strided clip (see :meth:`span_at` for time-based clips)."""
        return (self.frames - 1) * self.stride + 1

    def offsets(self, fps: float) -> np.ndarray:
        """Frame offsets of a clip's frames from its start: ``k · stride``, or ``round(k · seconds · fps / frames)``
        when sampling by time."""
        k = np.arange(self.frames, dtype=np.int64)
        if self.seconds is None:
            return k * self.stride
        return np.rint(k * (self.seconds * float(fps) / self.frames)).astype(np.int64)

    def span_at(self, fps: float) -> int:
        """Frames of a video at ``fps`` covered by one clip."""
        return int(self.offsets(fps)[-1]) + 1


@dataclass
class ClipBatch:
    """A batch as the harness hands it to ``pretrain_step``.

    ``views`` holds ``clips_per_video`` tensors of shape ``(B, C, T, H, W)``, normalised with the dataset's
    training mean/std (``norm`` = ``(mean, std)`` on the [0, 1] scale, so ``x · std + mean`` recovers pixels);
    ``views[0]`` is ``clips``. ``frame_indices`` are the source-video frame numbers of every clip frame,
    ``(B, V, T)``. ``ed_es`` is ``(B, 2)`` end-diastolic/end-systolic frame indices (-1 when the dataset has none);
    filled only for methods whose clip spec sets ``needs_ed_es``.

    ``labels`` maps each task of the clip spec's ``tasks`` to ``(B,)`` targets: int64 class indices (-1 where a
    video has no label) for classification, float32 (NaN where missing) for regression. ``extras`` holds what
    :meth:`Method.prepare_sample` computed in the loader workers, stacked over the batch.
    """

    views: list[torch.Tensor]
    frame_indices: torch.Tensor
    fps: torch.Tensor
    video_ids: list[str]
    ed_es: torch.Tensor | None = None
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    norm: tuple[float, float] = (0.0, 1.0)

    @property
    def clips(self) -> torch.Tensor:
        return self.views[0]

    def to(self, device: torch.device | str) -> ClipBatch:
        return ClipBatch(
            views=[v.to(device, non_blocking=True) for v in self.views],
            frame_indices=self.frame_indices.to(device),
            fps=self.fps.to(device),
            video_ids=self.video_ids,
            ed_es=None if self.ed_es is None else self.ed_es.to(device),
            labels={k: v.to(device) for k, v in self.labels.items()},
            extras={k: v.to(device, non_blocking=True) for k, v in self.extras.items()},
            norm=self.norm,
        )


@dataclass(frozen=True)
class SampleMeta:
    """What :meth:`Method.prepare_sample` knows about the sample it prepares.

    ``seed`` is a function of ``(run seed, epoch, item)`` only, so anything drawn from it is identical for any
    number of loader workers and on resume.
    """

    video_id: str
    fps: float
    ed_es: tuple[int, int]
    seed: int

    def generator(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class TrainState:
    """Where training stands when ``pretrain_step``, ``on_before_optimizer_step`` and ``after_step`` run.

    ``step`` is the 0-based index of the optimiser step being taken (``after_step`` receives the state of the
    step just taken); ``epoch = step // steps_per_epoch`` counts passes over the training videos as the loader
    draws them; ``progress = step / total_steps``.
    """

    step: int
    epoch: int
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def at(cls, step: int, steps_per_epoch: int, total_steps: int) -> TrainState:
        return cls(step, step // max(1, steps_per_epoch), max(1, steps_per_epoch), total_steps)

    @property
    def progress(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))

    @property
    def epoch_float(self) -> float:
        """Fractional epochs done before this step (schedules written in epochs, such as DINO's)."""
        return self.step / self.steps_per_epoch


@dataclass
class Embedding:
    """Frozen features: ``pooled`` ``(B, D)`` and the token grid ``(B, T', H', W', D)``."""

    pooled: torch.Tensor
    tokens: torch.Tensor


@dataclass
class LossOutput:
    """``loss`` is optimised; every entry of ``terms`` is logged under its name (``loss`` is logged too)."""

    loss: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """Fields every method shares, so harness profiles and searches can set them uniformly.

    ``seconds`` (optional) samples ``frames`` frames evenly over that many seconds of each video instead of every
    ``stride``-th frame. Subclasses add their own hyperparameters with the paper's defaults.
    """

    model: str = "vit_small"
    frames: int = ranged(16, ge=1)
    stride: int = ranged(2, ge=1)
    size: int = ranged(112, ge=8)
    patch: int = ranged(16, ge=1)
    tubelet: int = ranged(2, ge=1)
    in_chans: int = ranged(1, ge=1)
    seconds: float | None = ranged(None, gt=0)


@runtime_checkable
class VideoEncoder(Protocol):
    """The downstream contract: what protocols (fine-tuning, token heads) may rely on, checked at run time.

    - ``blocks``: an ``nn.ModuleList`` (partial fine-tuning unfreezes the last k) and ``embed_dim``, ``grid``.
    - ``forward_features(clips) -> Embedding``: differentiable (fine-tuning trains through it); ``Method.encode`` is
      its frozen use.
    - ``no_weight_decay()``: parameter names (relative to the encoder) excluded from weight decay.
    - ``group_matcher(coarse=False)``: timm's layer grouping (``stem`` and ``blocks`` regexes) for layer-wise lr
      decay.
    The encoder must be an ``nn.Module`` holding every parameter it uses: fine-tuning copies the encoder alone,
    never the whole method.
    """

    blocks: nn.ModuleList
    embed_dim: int
    grid: tuple[int, int, int]

    def forward_features(self, clips: torch.Tensor) -> Embedding: ...

    def no_weight_decay(self) -> set[str]: ...

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]: ...


class Method(nn.Module, abc.ABC):
    """Base class of every method plugin (Method API v2).

    Subclasses set ``name``, ``version`` and ``Config`` (a dataclass deriving from :class:`MethodConfig`), build
    their modules in ``__init__(config)``, and implement ``pretrain_step`` and ``encode``. Parameters that must
    not be optimised (EMA teachers) are registered with ``requires_grad=False``; state that must survive a resume
    (EMA teachers, DINO centres, queues) lives in parameters or persistent buffers, since the checkpoint is the
    ``state_dict``.

    Hooks, in the order the training loop calls them at every step: ``pretrain_step(batch, state)`` → backward →
    gradient clipping → ``on_before_optimizer_step(state, optimizer)`` → optimiser step → ``after_step(state)``.
    Learning rate and weight decay follow the harness's schedules (``pretrain.lr``, ``pretrain.weight_decay`` →
    ``pretrain.weight_decay_end``); ``param_groups()`` may return custom groups whose ``lr_scale``/``wd_scale``
    multiply them.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    trainable: ClassVar[bool] = True
    pretrain_defaults: ClassVar[dict[str, Any]] = {}
    #: Per-profile settings the method adds on top of the harness profile (``{"quick": {"method": {...},
    #: "pretrain": {...}}}``), before ``--set``: e.g. DISCOVER's quick profile trains the image branch on fewer
    #: frames so that a cold quick run fits the same budget as every other method. They enter the config hash.
    profile_overrides: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    #: Where the paper profile's values come from, by ``section.field`` (``"pretrain.epochs"``, ``"method.frames"``):
    #: ``"paper: Appendix C"``, ``"code: repo/file"`` or ``"choice: why"``. ``--dry-run`` prints it beside each
    #: value; a value not named here is the plugin's or the harness's default.
    sources: ClassVar[dict[str, str]] = {}
    encoder: VideoEncoder

    def __init__(self, config: MethodConfig) -> None:
        super().__init__()
        self.config = config

    def clip_spec(self) -> ClipSpec:
        """Clips for pretraining; override to ask for several clips per video or ED/ES indices."""
        c = self.config
        return ClipSpec(frames=c.frames, stride=c.stride, size=c.size, seconds=c.seconds)

    def eval_clip_spec(self) -> ClipSpec:
        """Geometry of clips fed to ``encode`` downstream (start and count are set by the protocol)."""
        c = self.config
        settings = {"start": "fixed"} | type(self).eval_clip_settings(c)
        return ClipSpec(frames=c.frames, stride=c.stride, size=c.size, seconds=c.seconds, **settings)

    @classmethod
    def eval_clip_settings(cls, config: MethodConfig) -> dict[str, Any]:
        """Evaluation-clip fields (``start``, ``num_clips``, ``start_frame``) that ``config`` imposes on every
        protocol, over the protocol's ``eval_clips``; e.g. Temporal MAE's oracle ``{"start": "ed_es"}``, whose
        encoder only ever sees clips spread from end-diastole to end-systole. Empty by default."""
        return {}

    @abc.abstractmethod
    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        """Compute the pretraining loss of one batch. The harness does backward, optimiser and schedules."""

    def on_before_optimizer_step(self, state: TrainState, optimizer: torch.optim.Optimizer) -> None:
        """Gradient surgery between backward (and clipping) and the optimiser step, e.g. DINO's frozen last layer
        in the first epoch."""

    def after_step(self, state: TrainState) -> None:
        """Called after every optimiser step (EMA updates, temperature and momentum schedules)."""

    def prepare_sample(self, frames: torch.Tensor, frame_indices: np.ndarray, meta: SampleMeta) -> dict[str, Any]:
        """Per-sample tensors computed in the DataLoader workers from the raw clip frames (optical flow, sector
        masks), collected in ``ClipBatch.extras``.

        ``frames`` are the uint8 frames ``(V, T, H, W)`` of the sample's ``V`` views before normalisation;
        ``frame_indices`` ``(V, T)``. Must be deterministic given ``meta`` (draw randomness from
        ``meta.generator()``). Not called unless a method overrides it.
        """
        return {}

    @abc.abstractmethod
    def encode(self, clips: torch.Tensor) -> Embedding:
        """Frozen features of ``(B, C, T, H, W)`` clips; must be deterministic in eval mode."""

    def no_weight_decay(self) -> set[str]:
        """Names of parameters (relative to the method) excluded from weight decay, beyond biases and norm weights.

        Submodules' own ``no_weight_decay()`` names (the encoder's, a decoder's mask token) are gathered by the
        harness; list here only what no submodule names.
        """
        return set()

    def param_groups(self) -> list[dict[str, Any]] | None:
        """Custom optimiser groups, or None for the harness's (decay / no decay).

        Each group is ``{"params": [...], "lr_scale": float, "wd_scale": float}`` (scales default to 1); the
        scheduled lr and weight decay are multiplied by them at every step. Every trainable parameter must be in
        exactly one group.
        """
        return None

    def map_init_weights(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the keys of a foreign weight file (``pretrain.init_from``) to this method's ``state_dict`` names.

        The default keeps names as they are after dropping a ``module.`` (DDP) prefix.
        """
        return {k.removeprefix("module."): v for k, v in state.items()}


class FrozenMethod(Method):
    """A method with nothing to pretrain (random-init floor, fixed feature extractors).

    The harness saves its initial weights as the checkpoint and never calls ``pretrain_step``.
    """

    trainable = False

    def pretrain_step(self, batch: ClipBatch, state: TrainState) -> LossOutput:
        raise RuntimeError(f"method {self.name!r} has no pretraining; the harness must not call pretrain_step")
