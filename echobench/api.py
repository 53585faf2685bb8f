"""The Method contract: the one interface a method author learns.

A method owns its modules (students, EMA teachers, decoders, prototypes) and computes its loss; the harness owns
data, clip sampling, the optimiser loop, checkpoints, the embedding cache and every protocol. Only ``encoder`` and
``encode`` are used downstream.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from echobench.config import ranged

StartMode = Literal["random", "fixed", "evenly", "all", "ed_es", "traced"]


@dataclass(frozen=True)
class ClipSpec:
    """What a method needs from the loader.

    ``start`` chooses clip start frames: ``random`` (training), ``fixed`` (``start_frame``), ``evenly``
    (``num_clips`` evenly spaced starts), ``all`` (every start at ``frames * stride`` spacing), ``ed_es``
    (``frames`` indices spread evenly from the end-diastolic to the end-systolic frame: Temporal MAE's oracle),
    ``traced`` (two clips per video with LV tracings, clip 0 holding the traced ED frame and clip 1 the traced ES
    frame, each on the clip's stride lattice; videos without tracings give no clip — segmentation).
    ``clips_per_video`` > 1 samples that many clips of the same video with independent random starts
    (EchoCardMAE's temporal-invariant alignment).
    """

    frames: int = 16
    stride: int = 2
    size: int = 112
    clips_per_video: int = 1
    start: StartMode = "random"
    start_frame: int = 0
    num_clips: int = 1
    needs_ed_es: bool = False

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1 or self.size < 8:
            raise ValueError(f"invalid clip spec {self}: frames and stride must be >= 1 and size >= 8")
        if self.clips_per_video < 1 or self.num_clips < 1:
            raise ValueError(f"invalid clip spec {self}: clips_per_video and num_clips must be >= 1")

    @property
    def span(self) -> int:
        """Frames of the source video covered by one clip."""
        return (self.frames - 1) * self.stride + 1


@dataclass
class ClipBatch:
    """A batch as the harness hands it to ``pretrain_step``.

    ``views`` holds ``clips_per_video`` tensors of shape ``(B, C, T, H, W)``, normalised with the dataset's
    training mean/std; ``views[0]`` is ``clips``. ``frame_indices`` are the source-video frame numbers of every
    clip frame, ``(B, V, T)``. ``ed_es`` is ``(B, 2)`` end-diastolic/end-systolic frame indices (-1 when the
    dataset has none); filled only for methods whose clip spec sets ``needs_ed_es``.
    """

    views: list[torch.Tensor]
    frame_indices: torch.Tensor
    fps: torch.Tensor
    video_ids: list[str]
    ed_es: torch.Tensor | None = None

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
        )


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

    Subclasses add their own hyperparameters with the paper's defaults.
    """

    model: str = "vit_small"
    frames: int = ranged(16, ge=1)
    stride: int = ranged(2, ge=1)
    size: int = ranged(112, ge=8)
    patch: int = ranged(16, ge=1)
    tubelet: int = ranged(2, ge=1)
    in_chans: int = ranged(1, ge=1)


class VideoEncoder(nn.Module):
    """What downstream protocols may rely on: ``blocks`` (for partial fine-tuning), ``embed_dim``, ``grid``."""

    blocks: nn.ModuleList
    embed_dim: int
    grid: tuple[int, int, int]


class Method(nn.Module, abc.ABC):
    """Base class of every method plugin.

    Subclasses set ``name``, ``version`` and ``Config`` (a dataclass deriving from :class:`MethodConfig`), build
    their modules in ``__init__(config)``, and implement ``pretrain_step`` and ``encode``. Parameters that must
    not be optimised (EMA teachers) are registered with ``requires_grad=False``.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    trainable: ClassVar[bool] = True
    pretrain_defaults: ClassVar[dict[str, Any]] = {}
    encoder: VideoEncoder

    def __init__(self, config: MethodConfig) -> None:
        super().__init__()
        self.config = config

    def clip_spec(self) -> ClipSpec:
        """Clips for pretraining; override to ask for several clips per video or ED/ES indices."""
        c = self.config
        return ClipSpec(frames=c.frames, stride=c.stride, size=c.size)

    def eval_clip_spec(self) -> ClipSpec:
        """Geometry of clips fed to ``encode`` downstream (start and count are set by the protocol)."""
        c = self.config
        return ClipSpec(frames=c.frames, stride=c.stride, size=c.size, start="fixed")

    @abc.abstractmethod
    def pretrain_step(self, batch: ClipBatch) -> LossOutput:
        """Compute the pretraining loss of one batch. The harness does backward, optimiser and schedules."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step (EMA updates, temperature schedules)."""

    @abc.abstractmethod
    def encode(self, clips: torch.Tensor) -> Embedding:
        """Frozen features of ``(B, C, T, H, W)`` clips; must be deterministic in eval mode."""

    def no_weight_decay(self) -> set[str]:
        """Names of parameters excluded from weight decay, beyond biases and norm weights."""
        return set()


class FrozenMethod(Method):
    """A method with nothing to pretrain (random-init floor, fixed feature extractors).

    The harness saves its initial weights as the checkpoint and never calls ``pretrain_step``.
    """

    trainable = False

    def pretrain_step(self, batch: ClipBatch) -> LossOutput:
        raise RuntimeError(f"method {self.name!r} has no pretraining; the harness must not call pretrain_step")
