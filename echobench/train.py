"""The one training loop: AdamW, warmup + cosine lr, weight-decay schedule, grad clipping, autocast, checkpoints
and exact resume.

Pretraining and fine-tuning both run through :class:`TrainLoop`. Every random draw of step ``s`` (clip starts,
masks, dropout) is a function of ``(seed, s)``, and the lr and weight decay of step ``s`` are pure functions of
``s``, so a run resumed from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from echobench import checkpoint as ckpt
from echobench import distributed
from echobench.api import LossOutput, TrainState
from echobench.config import PretrainConfig
from echobench.console import progress_bar
from echobench.errors import UserError
from echobench.run_length import warmup_steps


class MetricSink(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


#: Called with ``(step, score)`` after each validation of a model-selecting loop; ``echobench tune`` reports these
#: intermediate values to Optuna's pruner (and may stop the trial by raising from it).
validation_listener: ContextVar[Callable[[int, float], None] | None] = ContextVar("validation_listener", default=None)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --set pretrain.device=cpu")
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 pays off on GPUs and on CPUs with bf16 matrix units (AMX / AVX512-BF16); elsewhere it is emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast when ``amp`` is ``bf16``, or ``auto`` on hardware where bf16 is fast."""
    use = amp == "bf16" or (amp == "auto" and bf16_is_fast(device))
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def gather_no_weight_decay(model: nn.Module) -> set[str]:
    """Every ``no_weight_decay()`` name declared by ``model`` or any submodule, as full parameter names."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        declared = getattr(module, "no_weight_decay", None)
        if callable(declared):
            names |= {f"{prefix}.{name}" if prefix else name for name in declared()}
    return names


def param_groups(
    model: nn.Module,
    no_decay: set[str],
    lr_scale: Callable[[str], float] | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: biases, norms, positions and tokens (1-D tensors, or named by ``no_decay`` or by any module's
    ``no_weight_decay()``) get no weight decay (``wd_scale`` 0); ``lr_scale(name)`` multiplies a parameter's
    learning rate (layer-wise decay in fine-tuning)."""
    excluded = no_decay | gather_no_weight_decay(model)
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim <= 1 or name in excluded)
        scale = 1.0 if lr_scale is None else float(lr_scale(name))
        groups.setdefault((decays, scale), []).append(param)
    return [
        {"params": params, "wd_scale": 1.0 if decays else 0.0, "lr_scale": scale}
        for (decays, scale), params in sorted(groups.items(), key=lambda item: (not item[0][0], -item[0][1]))
    ]


def complete_groups(model: nn.Module, groups: list[dict[str, Any]], owner: str) -> list[dict[str, Any]]:
    """A plugin's own groups with default scales, after checking every trainable parameter is in exactly one."""
    seen: dict[int, int] = {}
    for group in groups:
        for param in group["params"]:
            seen[id(param)] = seen.get(id(param), 0) + 1
    names = {id(p): n for n, p in model.named_parameters()}
    twice = [names.get(k, "?") for k, count in seen.items() if count > 1]
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if twice or missing:
        problem = f"parameter {twice[0]!r} is in two groups" if twice else f"trainable {missing[0]!r} is in no group"
        raise UserError(f"{owner}.param_groups(): {problem}; list every trainable parameter exactly once")
    return [{"lr_scale": 1.0, "wd_scale": 1.0, **group, "params": list(group["params"])} for group in groups]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def cosine_value(step: int, total: int, start: float, end: float) -> float:
    """Cosine from ``start`` at step 0 to ``end`` at the last step: progress ``s / (T − 1)``, so both ends are
    reached within the run. Not DINO's or V-JEPA's form: DINO's ``cosine_scheduler`` (facebookresearch/dino
    ``utils.py``) evaluates progress ``s / T`` and V-JEPA's ``CosineWDSchedule`` (facebookresearch/jepa
    ``src/utils/schedulers.py``) ``(s + 1) / T``; the three differ by at most one step's worth of progress."""
    progress = min(1.0, step / max(1, total - 1))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def scheduled(config: PretrainConfig, step: int, steps_per_epoch: int = 1) -> tuple[float, float]:
    """The learning rate and weight decay of step ``step`` (before group scales): a pure function of the step.
    ``steps_per_epoch`` converts a warm-up given in epochs (``warmup_epochs``) into steps."""
    warmup = warmup_steps(config, steps_per_epoch)
    lr = config.effective_lr * lr_factor(step, config.steps, warmup, config.min_lr_ratio)
    if config.weight_decay_end is None:
        return lr, config.weight_decay
    return lr, cosine_value(step, config.steps, config.weight_decay, config.weight_decay_end)


def step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def apply_schedule(
    optimizer: torch.optim.Optimizer, config: PretrainConfig, step: int, steps_per_epoch: int = 1
) -> tuple[float, float]:
    """Set every group's lr and weight decay for step ``step`` from the schedules and the group's scales."""
    lr, weight_decay = scheduled(config, step, steps_per_epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        group["weight_decay"] = weight_decay * group.get("wd_scale", 1.0)
    return lr, weight_decay


@dataclass
class TrainLoop:
    """Optimises ``model`` with ``step_fn(batch, state)`` for ``config.steps`` steps, checkpointing into ``folder``.

    ``make_meta(step, complete)`` builds the checkpoint metadata; ``before_optimizer_step(state, optimizer)`` runs
    between backward (and clipping) and the optimiser step; ``after_step(state)`` after it (EMA, schedules);
    ``batches(start_step)`` yields batches from a given step on; ``steps_per_epoch`` is the loader's, so
    ``TrainState.epoch`` counts real passes over the data. ``groups`` replaces the default decay / no-decay groups.

    Model selection (fine-tuning): with ``validate`` (a score, higher is better, computed with the model in eval
    mode) the loop scores the model every ``validate_every`` steps and after the last step, keeps the weights of
    the best score (the earliest among ties) and ends with them; ``best_step``/``best_score``/``history`` record
    it. Such a run is not resumed mid-way: the best weights so far are not part of the checkpoint.
    """

    model: nn.Module
    step_fn: Callable[[Any, TrainState], LossOutput]
    config: PretrainConfig
    folder: Path
    make_meta: Callable[[int, bool], ckpt.CheckpointMeta]
    after_step: Callable[[TrainState], None] | None = None
    before_optimizer_step: Callable[[TrainState, torch.optim.Optimizer], None] | None = None
    steps_per_epoch: int = 1
    groups: list[dict[str, Any]] | None = None
    no_decay: frozenset[str] = frozenset()
    sink: MetricSink | None = None
    description: str = "train"
    stop_after: int | None = None
    lr_scale: Callable[[str], float] | None = None
    validate: Callable[[], float] | None = None
    validate_every: int = 0
    best_step: int = 0
    best_score: float = float("-inf")
    history: list[tuple[int, float]] = field(default_factory=list)

    def run(self, batches: Callable[[int], Iterator[Any]]) -> int:
        """Train (resuming if the folder holds an unfinished run); returns the step reached."""
        cfg = self.config
        device = distributed.local_device(resolve_device(cfg.device))
        world = distributed.current()
        self.model.to(device)
        groups = self.groups or param_groups(self.model, set(self.no_decay), self.lr_scale)
        optimizer = torch.optim.AdamW(groups, lr=cfg.effective_lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        start = 0 if self.validate is not None else self._resume(optimizer, device)
        best_state: dict[str, torch.Tensor] | None = None
        last = cfg.steps if self.stop_after is None else min(cfg.steps, self.stop_after)
        self.model.train()
        pending: dict[str, list[float]] = {}
        iterator = batches(start)
        step = start
        with progress_bar(disable=not world.is_main) as progress:
            task = progress.add_task(self.description, total=cfg.steps, completed=start, info="")
            for step in range(start, last):
                state = TrainState.at(step, self.steps_per_epoch, cfg.steps)
                torch.manual_seed(step_seed(cfg.seed, step))
                batch = next(iterator)
                batch = batch.to(device) if hasattr(batch, "to") else batch
                with autocast(device, cfg.amp):
                    out = self.step_fn(batch, state)
                self._check_finite(out, step)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                distributed.average_gradients(self.model)
                terms = {"loss": float(out.loss.detach()), **{k: float(v) for k, v in out.terms.items()}}
                terms = distributed.mean_over_ranks(terms)
                if cfg.grad_clip > 0:
                    terms["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                if self.before_optimizer_step is not None:
                    self.before_optimizer_step(state, optimizer)
                terms["lr"], terms["weight_decay"] = apply_schedule(optimizer, cfg, step, self.steps_per_epoch)
                optimizer.step()
                if self.after_step is not None:
                    self.after_step(state)
                for key, value in terms.items():
                    pending.setdefault(key, []).append(value)
                if (step + 1) % cfg.log_every == 0 or step + 1 == last:
                    self._flush(pending, step + 1)
                progress.update(task, advance=1, info=f"loss {terms['loss']:.4f}")
                if self._should_validate(step + 1, last):
                    best_state = self._select(step + 1, best_state) or best_state
                elif (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps and self.validate is None:
                    if world.is_main:
                        self._save(optimizer, step + 1, complete=False)
            step = last
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.to("cpu")
        if world.is_main and step >= cfg.steps:
            self._save(None, step, complete=True)
        elif world.is_main:
            self._save(optimizer, step, complete=False)
        # Other ranks read the checkpoint rank 0 has just written.
        distributed.barrier()
        return step

    def _should_validate(self, step: int, last: int) -> bool:
        if self.validate is None:
            return False
        return step == last or (self.validate_every > 0 and step % self.validate_every == 0)

    def _select(self, step: int, best_state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        """Score the model; a copy of its weights when the score is the best so far, else None."""
        assert self.validate is not None
        self.model.eval()
        with torch.no_grad():
            score = float(self.validate())
        self.model.train()
        self.history.append((step, score))
        if self.sink is not None:
            self.sink.log_metrics({"val_score": score}, step)
        listener = validation_listener.get()
        if listener is not None:
            listener(step, score)
        if best_state is not None and not score > self.best_score:
            return None
        self.best_step, self.best_score = step, score
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _resume(self, optimizer: torch.optim.Optimizer, device: torch.device) -> int:
        return ckpt.load_resumable(self.folder, self.model, optimizer, device)

    def _save(self, optimizer: torch.optim.Optimizer | None, step: int, *, complete: bool) -> None:
        ckpt.save_checkpoint(self.folder, self.model, self.make_meta(step, complete), None if complete else optimizer)

    def _flush(self, pending: dict[str, list[float]], step: int) -> None:
        if self.sink is not None and pending:
            self.sink.log_metrics({k: float(np.mean(v)) for k, v in pending.items()}, step)
        pending.clear()

    def _check_finite(self, out: LossOutput, step: int) -> None:
        if not isinstance(out, LossOutput) or not torch.is_tensor(out.loss) or out.loss.ndim != 0:
            raise UserError(f"{self.description}: step must return LossOutput with a scalar tensor loss, got {out!r}")
        if not torch.isfinite(out.loss.detach()).item():
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in out.terms.items())
            raise UserError(
                f"{self.description}: non-finite loss at step {step} ({terms or 'no terms'}); "
                "lower pretrain.lr or check the plugin's loss for divisions by zero"
            )
