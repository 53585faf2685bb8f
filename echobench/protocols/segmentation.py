"""Frozen-encoder segmentation of the traced ED and ES frames (DISCOVER; Ellis et al.'s V-JEPA evaluation).

Every video with tracings gives two images: its traced ED and ES frames. Each is encoded inside a ``traced`` clip
(:func:`echobench.data.sampling.traced_start`) that holds the frame itself, so the temporal token ``q // tubelet``
covering clip position ``q`` is the token map of that frame; the head decodes that ``(H', W', D)`` map to
per-pixel logits (``linear``: DISCOVER's per-token linear layer + bilinear upsampling; ``transposed_conv``: two
transposed convolutions). Targets are the dataset's label maps (:meth:`VideoDataset.masks`) mapped to the working
size with the frames' own crop (:meth:`DecodeCache.working_mask`).

Only the traced token slice is kept in memory (float16, converted per batch). Token channels are standardised
with the training images' per-channel mean and SD (as the probes standardise features): the heads' first layer
is linear, so this changes no model class, but one lr grid then suits encoders whose token scales differ by
orders of magnitude (a briefly pretrained VideoMAE's tokens vary by a few hundredths around a large constant,
and an unstandardised head never leaves the all-background solution). One head per learning rate of
``lrs`` is trained with AdamW from the same seeded initialisation and the same seeded minibatch order; after each
epoch it is scored by mean Dice on validation and keeps its best epoch, stopping after ``patience`` epochs
without improvement. The head with the best validation Dice (first in ``lrs`` order among ties) is evaluated
once on test. Loss: pixel-wise cross-entropy (``ce``) or cross-entropy + soft Dice (``ce_dice``: one minus the
mean over images and foreground classes of ``(2 Σ p·y + 1) / (Σ p + Σ y + 1)`` on softmax probabilities ``p``
and one-hot targets ``y``; the +1 keeps an absent class's term finite). ``fraction`` < 1 trains on a seeded,
patient-grouped subset of the labelled training videos.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from echobench.context import ProtocolContext
from echobench.data.sampling import traced_token_index
from echobench.data.subsets import label_fraction_subsets
from echobench.errors import UserError
from echobench.metrics import OVERLAP_MEASURES, PHASES, bootstrap_ci, image_overlaps, segmentation_metrics
from echobench.models.heads import LinearUpsampleSegHead, TransposedConvSegHead
from echobench.protocols.base import ProtocolResult, config_from_mapping
from echobench.protocols.scoring import interval_unit
from echobench.train import resolve_device

Head = Literal["linear", "transposed_conv"]
Loss = Literal["ce", "ce_dice"]
_HEADS: dict[str, type[nn.Module]] = {"linear": LinearUpsampleSegHead, "transposed_conv": TransposedConvSegHead}
_LOSSES = ("ce", "ce_dice")
#: Images scored per forward pass when predicting (no gradients, so larger than a training batch).
_PREDICT_BATCH = 64


@dataclass
class SegmentationConfig:
    """Protocol settings; field names match ``protocols/segmentation.yaml``."""

    head: Head = "linear"
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decay: float = 1e-4
    epochs: int = 30
    batch_size: int = 16
    patience: int = 5
    loss: Loss = "ce"
    fraction: float = 1.0
    ci_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head not in _HEADS:
            raise UserError(f"segmentation: head must be one of {', '.join(_HEADS)}, got {self.head!r}")
        if self.loss not in _LOSSES:
            raise UserError(f"segmentation: loss must be one of {', '.join(_LOSSES)}, got {self.loss!r}")
        lrs = tuple(self.lrs) if isinstance(self.lrs, list | tuple) else (self.lrs,)
        if not lrs or not all(_is_number(lr) and lr > 0 for lr in lrs):
            raise UserError(f"segmentation: lrs must be a non-empty list of positive numbers, got {self.lrs!r}")
        self.lrs = tuple(float(lr) for lr in lrs)
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise UserError(f"segmentation: weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not _is_number(self.fraction) or not 0 < self.fraction <= 1:
            raise UserError(f"segmentation: fraction must be in (0, 1] (e.g. 0.1 for 10 %), got {self.fraction!r}")
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise UserError(f"segmentation: {name} must be a positive integer, got {value!r}")
        if not _is_int(self.ci_resamples) or self.ci_resamples < 0:
            raise UserError(f"segmentation: ci_resamples must be >= 0 (0 = no intervals), got {self.ci_resamples!r}")
        if not _is_int(self.seed):
            raise UserError(f"segmentation: seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SegmentationConfig:
        return config_from_mapping(cls, values, "segmentation")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Images:
    """The traced images of one split, video-major: image ``2v`` is video ``v``'s ED frame, ``2v + 1`` its ES frame.

    ``tokens`` ``(2V, H', W', D)`` float16 is the token map of each image's temporal token; ``masks``
    ``(2V, S, S)`` uint8 its label map; ``frames`` ``(2V,)`` its source frame. ``groups`` holds each video's
    patient id when known (a video's images belong to its patient for the test intervals).
    """

    video_ids: list[str]
    tokens: np.ndarray
    masks: np.ndarray
    frames: np.ndarray
    groups: list[str] | None = None

    def __post_init__(self) -> None:
        if not len(self.tokens) == len(self.masks) == len(self.frames) == len(PHASES) * len(self.video_ids):
            raise ValueError("Images needs one ED and one ES image per video")
        if self.groups is not None and len(self.groups) != len(self.video_ids):
            raise ValueError("Images needs one patient id per video")


def traced_images(ctx: ProtocolContext, split: str) -> Images:
    """Token maps and label maps of the traced ED/ES frames of the split's labelled videos."""
    # Always traced clips, with the run's clip geometry: a wrapper (label sweep, k-fold) hands over its own
    # eval_clips, whose start mode does not apply here.
    spec = dataclasses.replace(ctx.eval_spec, start="traced")
    table, _ = ctx.labelled(split)
    fs = ctx.features(split, tokens=True, spec=spec)
    if fs.tokens is None or fs.frame_indices is None:
        raise ValueError("the embedding cache returned no tokens or frame indices for a token encoding")
    if not np.array_equal(fs.clip_video, np.repeat(np.arange(fs.num_videos), len(PHASES))):
        raise ValueError("traced encodings must hold exactly an ED and an ES clip per video, in that order")
    frames = table[["ed_frame", "es_frame"]].to_numpy(np.int64).reshape(-1)
    temporal = fs.tokens.shape[1]
    if spec.frames % temporal:
        raise UserError(
            f"segmentation: {spec.frames}-frame clips encode to {temporal} temporal tokens, not a whole tubelet "
            "per token; the method's encode must keep the (T', H', W') token grid"
        )
    token = traced_token_index(fs.frame_indices, frames, spec.frames // temporal)
    tokens = fs.tokens[np.arange(len(frames)), token]
    traced = zip(fs.video_ids, frames.reshape(-1, len(PHASES)), strict=True)
    masks = np.concatenate([_working_masks(ctx, video_id, int(ed), int(es)) for video_id, (ed, es) in traced])
    return Images(video_ids=fs.video_ids, tokens=tokens, masks=masks, frames=frames, groups=fs.groups)


def _working_masks(ctx: ProtocolContext, video_id: str, ed: int, es: int) -> np.ndarray:
    label_maps = ctx.dataset.masks(video_id)
    missing = [frame for frame in (ed, es) if frame not in label_maps]
    if missing:
        raise UserError(
            f"{ctx.dataset.name} video {video_id!r} has traced frame {missing[0]} without a mask; "
            "fix its tracings or label maps"
        )
    masks = np.stack([ctx.cache.working_mask(video_id, label_maps[frame]) for frame in (ed, es)])
    classes = len(ctx.dataset.mask_classes)
    if masks.max() > classes:
        raise UserError(
            f"{ctx.dataset.name} video {video_id!r} has mask value {int(masks.max())} but the dataset names only "
            f"{classes} class(es) {ctx.dataset.mask_classes}; fix its label maps"
        )
    return masks


def channel_stats(tokens: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and SD ``(D,)`` float64 over every token of ``(N, H', W', D)`` maps (1 where the SD is 0).

    Accumulated in float64 over chunks of images, so a large float16 split is never copied whole.
    """
    dim = tokens.shape[-1]
    total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
    for start in range(0, len(tokens), chunk):
        block = tokens[start : start + chunk].reshape(-1, dim).astype(np.float64)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
        count += len(block)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean, np.where(std > 0, std, 1.0)


@dataclass
class _Fit:
    head: nn.Module
    lr: float
    epoch: int
    dice: float


class SegmentationTrainer:
    """Trains one segmentation head per learning rate on ``train`` images and keeps each head's best val epoch."""

    def __init__(self, train: Images, val: Images, config: SegmentationConfig, num_classes: int) -> None:
        side, dim = train.tokens.shape[1], train.tokens.shape[-1]
        size = train.masks.shape[-1]
        if train.tokens.shape[1:] != val.tokens.shape[1:] or side != train.tokens.shape[2] or size % side:
            raise UserError(
                f"segmentation: token maps {train.tokens.shape[1:]} (train) and {val.tokens.shape[1:]} (val) must be "
                f"the same square grid dividing the {size}-pixel frames; re-encode all splits with one checkpoint"
            )
        self.train, self.val, self.config = train, val, config
        self.num_classes, self.dim, self.patch, self.size = num_classes, dim, size // side, size
        self.device = resolve_device("auto")
        mean, std = channel_stats(train.tokens)
        self.mean = torch.from_numpy(mean).float().to(self.device)
        self.std = torch.from_numpy(std).float().to(self.device)

    def new_head(self) -> nn.Module:
        # Every lr starts from the same weights, drawn from the config seed without touching the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            head = _HEADS[self.config.head](self.dim, self.num_classes, self.patch, self.size)
        return head.to(self.device)

    def fit(self) -> _Fit:
        """The head (at its best epoch) with the best validation Dice over ``lrs``; the first one among ties
        (``max`` keeps the first of equal keys)."""
        return max((self._fit(lr) for lr in self.config.lrs), key=lambda fit: fit.dice)

    def _fit(self, lr: float) -> _Fit:
        cfg = self.config
        head = self.new_head()
        optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        best = _Fit(copy.deepcopy(head), lr, 0, -np.inf)
        for epoch in range(1, cfg.epochs + 1):
            head.train()
            for rows in torch.randperm(len(self.train.tokens), generator=generator).split(cfg.batch_size):
                x, y = self._batch(self.train, rows.numpy())
                loss = self._loss(head(x), y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            dice = float(self.overlaps(head, self.val)[:, 0].mean())
            if dice > best.dice:
                best = _Fit(copy.deepcopy(head), lr, epoch, dice)
            elif epoch - best.epoch >= cfg.patience:
                break
        return best

    def _tokens(self, tokens: np.ndarray) -> torch.Tensor:
        """float16 token maps ``(B, H', W', D)`` → standardised float32 grids ``(B, 1, H', W', D)``."""
        x = torch.from_numpy(tokens).to(self.device).float()
        return ((x - self.mean) / self.std)[:, None]

    def _batch(self, images: Images, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self._tokens(images.tokens[rows]), torch.from_numpy(images.masks[rows]).to(self.device).long()

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, target)
        if self.config.loss == "ce_dice":
            probs = logits.softmax(dim=1)[:, 1:]
            onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
            inter = (probs * onehot).sum(dim=(2, 3))
            total = probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))
            loss = loss + 1 - ((2 * inter + 1) / (total + 1)).mean()
        return loss

    @torch.no_grad()
    def predict(self, head: nn.Module, images: Images) -> np.ndarray:
        """Predicted label maps ``(N, S, S)`` uint8 (argmax over classes)."""
        head.eval()
        out = []
        for start in range(0, len(images.tokens), _PREDICT_BATCH):
            x = self._tokens(images.tokens[start : start + _PREDICT_BATCH])
            out.append(head(x).argmax(dim=1).to(torch.uint8).cpu().numpy())
        return np.concatenate(out)

    def overlaps(self, head: nn.Module, images: Images) -> np.ndarray:
        """Per-image overlaps ``(N, 4, C)`` (:func:`echobench.metrics.image_overlaps`)."""
        return image_overlaps(images.masks, self.predict(head, images), self.num_classes)


def run_segmentation_family(ctx: ProtocolContext) -> ProtocolResult:
    """Train on (a fraction of) the training videos, choose lr and epoch on validation Dice, test once."""
    cfg: SegmentationConfig = ctx.config
    if ctx.task.kind != "segmentation":
        raise UserError(f"protocol segmentation needs a segmentation task (lv_seg), not {ctx.task.name}")
    if cfg.fraction < 1:
        ctx = ctx.with_splits(train=_fraction_of_training(ctx, cfg.fraction, cfg.seed))
    train, val, test = (traced_images(ctx, split) for split in ("train", "val", "test"))
    return run_segmentation(train, val, test, cfg, tuple(ctx.dataset.mask_classes))


def run_segmentation(
    train: Images, val: Images, test: Images, config: SegmentationConfig, classes: tuple[str, ...]
) -> ProtocolResult:
    """Fit on ``train``, select on ``val``, then score ``test`` once; ``classes`` names the label values 1, 2, …"""
    trainer = SegmentationTrainer(train, val, config, num_classes=len(classes) + 1)
    best = trainer.fit()
    summarise = functools.partial(segmentation_metrics, class_names=classes)
    val_overlaps = _per_video(trainer.overlaps(best.head, val))
    test_overlaps = _per_video(trainer.overlaps(best.head, test))
    ci = (
        bootstrap_ci(summarise, (test_overlaps,), config.ci_resamples, config.seed, groups=test.groups)
        if config.ci_resamples
        else {}
    )
    return ProtocolResult(
        metrics=summarise(test_overlaps),
        ci=ci,
        chosen={"lr": best.lr, "epoch": best.epoch},
        val_metrics=summarise(val_overlaps),
        predictions=predictions_frame(test, test_overlaps),
        **interval_unit(ci, test.groups, len(test.video_ids)),
    )


def _fraction_of_training(ctx: ProtocolContext, fraction: float, seed: int) -> pd.DataFrame:
    table, targets = ctx.labelled("train", record=False)
    rows = label_fraction_subsets(list(table["patient_id"]), targets, [fraction], [seed], stratify=False)
    return table.iloc[rows[(fraction, seed)]]


def _per_video(overlaps: np.ndarray) -> np.ndarray:
    """``(2V, 4, C)`` image-major overlaps → ``(V, 2, 4, C)``: a video's ED and ES images stay one bootstrap unit."""
    return overlaps.reshape(-1, len(PHASES), *overlaps.shape[1:])


def predictions_frame(images: Images, overlaps: np.ndarray) -> pd.DataFrame:
    """One row per test image: video, frame, phase, its overlaps (mean over foreground classes) and, when known,
    the video's ``patient_id``."""
    per_image = overlaps.reshape(len(images.frames), len(OVERLAP_MEASURES), -1).mean(axis=2)
    frame = pd.DataFrame(
        {
            "video_id": np.repeat(images.video_ids, len(PHASES)),
            "frame": images.frames,
            "phase": np.tile([p.upper() for p in PHASES], len(images.video_ids)),
        }
    )
    for m, measure in enumerate(OVERLAP_MEASURES):
        frame[measure] = per_image[:, m]
    if images.groups is not None:
        frame["patient_id"] = np.repeat(images.groups, len(PHASES))
    return frame
