"""Partial and full fine-tuning through the harness's one training loop (:class:`echobench.train.TrainLoop`).

A copy of the pretrained method's downstream encoder (never the whole method: teachers, decoders and heads of
pretraining stay behind) is fine-tuned together with a task head (:class:`TaskHead`: linear on the pooled
feature, or attentive / STFF / max-pool on the token grid) through the encoder's differentiable
``forward_features`` (the :class:`echobench.api.VideoEncoder` contract). ``unfreeze`` chooses what trains besides
the head: ``-1`` the whole encoder (``finetune-full``), ``k`` its last ``k`` blocks and its final norm
(``finetune-partial``, k = 3 as in DISCOVER), 0 nothing (a head on a frozen encoder, trained on random clips).
``layer_decay`` < 1 gives layer ``i`` of the encoder's ``L`` layers (as its ``group_matcher`` groups them, timm's
convention: stem, blocks, final norm) the learning rate ``lr · layer_decay^(L − 1 − i)`` (BEiT/MAE layer-wise
decay); the head gets ``lr · head_lr_scale``. After the first step the loop checks that gradients reached the
unfrozen encoder parameters.

Training clips start at random frames (the method's clip geometry); every ``eval_every`` steps the model scores
the validation videos with the protocol's evaluation clips (aggregated per video) by the task's primary metric,
and the best step's weights are kept (model selection on validation). Test is evaluated once, with those
weights. A finished fine-tune is stored beside the pretrained checkpoint under a hash of everything it depends
on, and reused.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.models import group_parameters
from torch import nn
from torch.utils.data import DataLoader

from echobench import checkpoint as ckpt
from echobench.api import ClipBatch, ClipSpec, LossOutput, TrainState, VideoEncoder
from echobench.config import PretrainConfig, stable_hash
from echobench.context import ProtocolContext
from echobench.contract import require_encoder
from echobench.data.loader import ClipDataset, EvalClipDataset, collate_eval, step_batches
from echobench.data.tasks import Task
from echobench.errors import UserError
from echobench.protocols.base import ProtocolResult, config_from_mapping
from echobench.protocols.scoring import (
    AGGREGATES,
    Aggregate,
    interval_unit,
    intervals,
    primary_metric,
    task_metrics,
    video_outputs,
)
from echobench.protocols.token_heads import HEAD_KINDS, HeadKind, TaskHead, token_frame_times
from echobench.train import TrainLoop, resolve_device


@dataclass
class FinetuneConfig:
    """Protocol settings; field names match ``protocols/finetune-partial.yaml`` and ``finetune-full.yaml``.

    Length: ``epochs`` passes over the labelled training videos when set (the paper profile), else ``steps``;
    ``eval_every_epochs`` likewise replaces ``eval_every`` (see :func:`in_steps`)."""

    unfreeze: int = 3
    head: HeadKind = "linear"
    steps: int = 500
    epochs: float | None = None
    batch_size: int = 8
    lr: float = 1e-4
    head_lr_scale: float = 10.0
    layer_decay: float = 1.0
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_every_epochs: float | None = None
    amp: str = "auto"
    aggregate: Aggregate = "mean"
    ci_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head not in HEAD_KINDS:
            raise UserError(f"fine-tuning: head must be one of {', '.join(HEAD_KINDS)}, got {self.head!r}")
        if self.aggregate not in AGGREGATES:
            raise UserError(f"fine-tuning: aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.unfreeze < -1:
            raise UserError(f"fine-tuning: unfreeze must be -1 (all), 0 or a block count, got {self.unfreeze}")
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise UserError(f"fine-tuning: {name} must be >= 1, got {getattr(self, name)}")
        for name in EPOCH_SETTINGS:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"fine-tuning: {name} must be > 0, got {value}")
        if not (self.lr > 0 and self.head_lr_scale > 0 and 0 < self.layer_decay <= 1):
            raise UserError("fine-tuning: lr and head_lr_scale must be > 0 and layer_decay in (0, 1]")
        if self.amp not in ("auto", "bf16", "off"):
            raise UserError(f"fine-tuning: amp must be auto, bf16 or off, got {self.amp!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FinetuneConfig:
        return config_from_mapping(cls, values, "fine-tuning")


#: Settings in epochs; each replaces its step-count twin (``steps``, ``eval_every``) when set.
EPOCH_SETTINGS = ("epochs", "eval_every_epochs")


def in_steps(cfg: FinetuneConfig, num_train_videos: int) -> tuple[FinetuneConfig, int]:
    """``cfg`` with its epoch settings turned into steps (``round(epochs × steps_per_epoch)``, steps per epoch =
    full batches of the labelled training videos), and the steps per epoch."""
    per_epoch = max(1, num_train_videos // cfg.batch_size)
    changes: dict[str, int] = {}
    if cfg.epochs is not None:
        changes["steps"] = max(1, round(cfg.epochs * per_epoch))
    if cfg.eval_every_epochs is not None:
        changes["eval_every"] = max(1, round(cfg.eval_every_epochs * per_epoch))
    return replace(cfg, **changes), per_epoch


def hashed_settings(cfg: FinetuneConfig) -> dict[str, Any]:
    """The settings a fine-tune's identity hashes: unset epoch settings left out, so a run in steps keeps its hash."""
    return {k: v for k, v in asdict(cfg).items() if not (k in EPOCH_SETTINGS and v is None)}


class FinetuneModel(nn.Module):
    """The downstream encoder (``forward_features`` gives pooled features and tokens) plus a task head."""

    def __init__(self, encoder: nn.Module, head: TaskHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, clips: torch.Tensor, frame_times: torch.Tensor | None) -> torch.Tensor:
        embedding = self.encoder.forward_features(clips)
        tokens = embedding.tokens if self.head.needs_tokens else None
        return self.head(embedding.pooled.float(), None if tokens is None else tokens.float(), frame_times)


def set_trainable(encoder: nn.Module, unfreeze: int) -> None:
    """Freeze the encoder, then unfreeze all of it (``-1``) or its last ``unfreeze`` blocks and final norm."""
    encoder.requires_grad_(False)
    depth = len(encoder.blocks)
    if unfreeze == -1:
        encoder.requires_grad_(True)
        return
    if unfreeze > depth:
        raise UserError(f"fine-tuning: cannot unfreeze {unfreeze} blocks of a {depth}-block encoder; use 0 … {depth}")
    if unfreeze == 0:
        return
    for block in encoder.blocks[depth - unfreeze :]:
        block.requires_grad_(True)
    norm = getattr(encoder, "norm", None)
    if isinstance(norm, nn.Module):
        norm.requires_grad_(True)


def layer_lr_scale(encoder: VideoEncoder, decay: float, head_scale: float) -> Any:
    """``name -> lr multiplier`` for parameters of a :class:`FinetuneModel` (see the module docstring)."""
    layers = group_parameters(encoder, encoder.group_matcher(coarse=False))
    num_layers = len(layers)
    layer_of = {name: rank for rank, names in enumerate(layers.values()) for name in names}

    def scale(name: str) -> float:
        if name.startswith("head."):
            return head_scale
        if decay == 1.0:
            return 1.0
        return decay ** (num_layers - 1 - layer_of.get(name.removeprefix("encoder."), num_layers - 1))

    return scale


def gradient_check(encoder: nn.Module, plugin: str) -> Any:
    """A ``before_optimizer_step`` hook that, at the first step, fails unless some unfrozen encoder parameter got a
    gradient (an encoder whose ``forward_features`` runs under ``no_grad`` would otherwise train nothing)."""

    def check(state: TrainState, optimizer: torch.optim.Optimizer) -> None:
        if state.step > 0:
            return
        trainable = [p for p in encoder.parameters() if p.requires_grad]
        if trainable and not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in trainable):
            raise UserError(
                f"fine-tuning {plugin!r}: no gradient reached the unfrozen encoder blocks; its encoder's "
                "forward_features must be differentiable (no torch.no_grad, no detach)"
            )

    return check


def run_finetune_family(ctx: ProtocolContext) -> ProtocolResult:
    task = ctx.task
    train_table, train_targets = ctx.labelled("train")
    cfg, steps_per_epoch = in_steps(ctx.config, len(train_table))
    val_table, val_targets = ctx.labelled("val")
    test_table, test_targets = ctx.labelled("test")
    for name, table in (("train", train_table), ("val", val_table), ("test", test_table)):
        if len(table) == 0:
            raise UserError(f"fine-tuning: split {name} has no video labelled for task {task.name}")
    if len(train_table) < cfg.batch_size:
        raise UserError(
            f"fine-tuning: {len(train_table)} labelled training videos, fewer than one batch of {cfg.batch_size}; "
            "lower protocol.batch_size"
        )
    encoder = copy.deepcopy(require_encoder(ctx.pretrained.method))
    outputs = len(task.classes) if task.is_classification else 1
    torch.manual_seed(cfg.seed)
    head = TaskHead(cfg.head, encoder.embed_dim, outputs, encoder.grid)
    set_trainable(encoder, cfg.unfreeze)
    model = FinetuneModel(encoder, head)
    target_mean, target_std = _target_scaling(task, train_targets)
    targets_by_video = dict(zip(train_table["video_id"], train_targets, strict=True))
    mean, std = ctx.norm
    train_spec = ClipSpec(
        frames=ctx.eval_spec.frames, stride=ctx.eval_spec.stride, size=ctx.eval_spec.size, seconds=ctx.eval_spec.seconds
    )
    clips = ClipDataset(ctx.cache, train_table, train_spec, mean, std, cfg.seed)
    device = resolve_device("auto")
    tubelet_tokens = encoder.grid[0]

    def step(batch: ClipBatch, state: TrainState) -> LossOutput:
        y = np.array([targets_by_video[v] for v in batch.video_ids])
        times = torch.from_numpy(token_frame_times(batch.frame_indices[:, 0].numpy(), tubelet_tokens)).to(
            batch.clips.device
        )
        out = model(batch.clips, times)
        if task.is_classification:
            loss = F.cross_entropy(out.float(), torch.from_numpy(y.astype(np.int64)).to(out.device))
        else:
            standard = torch.from_numpy(((y - target_mean) / target_std).astype(np.float32)).to(out.device)
            loss = F.mse_loss(out[:, 0].float(), standard)
        return LossOutput(loss=loss)

    def evaluate(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        data = EvalClipDataset(ctx.cache, table, ctx.eval_spec, mean, std)
        loader = DataLoader(data, batch_size=max(cfg.batch_size, 16), shuffle=False, collate_fn=collate_eval)
        outs = []
        model.to(device).eval()
        done = 0
        with torch.no_grad():
            for batch, _, _ in loader:
                indices = data.frame_indices[done : done + len(batch)]
                done += len(batch)
                times = torch.from_numpy(token_frame_times(indices, tubelet_tokens)).to(device)
                outs.append(model(batch.to(device), times).float().cpu())
        out = torch.cat(outs)[None]
        pred, score = video_outputs(out, data.video_rows, len(table), task, cfg.aggregate, target_mean, target_std)
        return pred[0], None if score is None else score[0]

    def validate() -> float:
        pred, score = evaluate(val_table)
        value = float(primary_metric(task, val_targets, pred[None], None if score is None else score[None])[0])
        signed = value if task.higher_is_better else -value
        return signed if np.isfinite(signed) else float("-inf")

    key = stable_hash(
        "encoder-only",
        hashed_settings(cfg),
        task.name,
        task.version,
        ctx.dataset.content_hash(),
        sorted(train_table["video_id"]),
        sorted(val_table["video_id"]),
        asdict(ctx.eval_spec),
        [round(mean, 8), round(std, 8)],
    )
    folder = ctx.pretrained.folder / "finetune" / key
    meta = ckpt.read_meta(folder)
    if meta is None or not meta.complete:
        loop = _loop(model, step, validate, cfg, folder, ctx)
        loop.run(lambda start: _batches(clips, cfg, start))
    meta = ckpt.load_model(folder, model, method=ctx.pretrained.method.name)
    best_step = int(meta.extra["best_step"])
    val_pred, val_score = evaluate(val_table)
    pred, score = evaluate(test_table)
    test_ids = list(test_table["video_id"])
    patients = [str(p) for p in test_table["patient_id"]] if "patient_id" in test_table.columns else None
    frame = pd.DataFrame({"video_id": test_ids, "target": test_targets, "prediction": pred})
    if score is not None:
        frame["score"] = score
    if patients is not None:
        frame["patient_id"] = patients
    model.to("cpu")
    ci = intervals(test_targets, pred, score, cfg.ci_resamples, cfg.seed, patients)
    return ProtocolResult(
        metrics=task_metrics(task, test_targets, pred, score),
        ci=ci,
        chosen={
            "step": best_step,
            "head": cfg.head,
            "unfreeze": cfg.unfreeze,
            "layer_decay": cfg.layer_decay,
            "steps": cfg.steps,
            "steps_per_epoch": steps_per_epoch,
            "epochs": round(cfg.steps / steps_per_epoch, 6),
        },
        val_metrics=task_metrics(task, val_targets, val_pred, val_score),
        predictions=frame,
        **interval_unit(ci, patients, len(test_ids)),
    )


def _target_scaling(task: Task, targets: np.ndarray) -> tuple[float, float]:
    if task.is_classification:
        return 0.0, 1.0
    values = np.asarray(targets, dtype=np.float64)
    return float(values.mean()), float(values.std()) or 1.0


def _batches(clips: ClipDataset, cfg: FinetuneConfig, start: int) -> Iterator[ClipBatch]:
    return step_batches(clips, cfg.batch_size, cfg.seed, start, num_workers=0)


def _loop(
    model: FinetuneModel,
    step: Any,
    validate: Any,
    cfg: FinetuneConfig,
    folder: Any,
    ctx: ProtocolContext,
) -> TrainLoop:
    train_config = PretrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        lr_scaling="none",
        warmup_fraction=cfg.warmup_fraction,
        weight_decay=cfg.weight_decay,
        betas=(0.9, 0.999),
        grad_clip=cfg.grad_clip,
        amp=cfg.amp,  # type: ignore[arg-type]
        checkpoint_every=cfg.steps + 1,
        seed=cfg.seed,
    )
    method = ctx.pretrained.method
    loops: list[TrainLoop] = []

    def make_meta(step_reached: int, complete: bool) -> ckpt.CheckpointMeta:
        # The loop saves once, at the end, with the best weights restored: their step and the validation curve.
        loop = loops[0]
        return ckpt.CheckpointMeta(
            method=method.name,
            method_version=method.version,
            method_config=asdict(method.config),
            step=step_reached,
            total_steps=cfg.steps,
            complete=complete,
            extra={
                "finetune_of": ctx.pretrained.checkpoint_hash,
                "protocol_config": hashed_settings(cfg),
                "best_step": loop.best_step,
                "validation_history": [list(h) for h in loop.history],
            },
        )

    loops.append(
        TrainLoop(
            model=model,
            step_fn=step,
            config=train_config,
            folder=folder,
            make_meta=make_meta,
            before_optimizer_step=gradient_check(model.encoder, method.name),
            description=f"fine-tune {method.name}",
            lr_scale=layer_lr_scale(model.encoder, cfg.layer_decay, cfg.head_lr_scale),
            validate=validate,
            validate_every=cfg.eval_every,
        )
    )
    return loops[0]
