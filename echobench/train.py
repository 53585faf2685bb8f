"""The one training loop: AdamW, warmup + cosine, grad clipping, autocast, checkpoints and exact resume.

Pretraining and fine-tuning both run through :class:`TrainLoop`. Every random draw of step ``s`` (clip starts,
masks, dropout) is a function of ``(seed, s)``, so a run resumed from a checkpoint continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from echobench import checkpoint as ckpt
from echobench.api import LossOutput
from echobench.config import PretrainConfig
from echobench.console import progress_bar
from echobench.errors import UserError


class MetricSink(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


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


def param_groups(
    model: nn.Module,
    weight_decay: float,
    no_decay: set[str],
    lr: float,
    lr_scale: Callable[[str], float] | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: biases, norms, positions and tokens (1-D tensors or named by the model) get no weight decay;
    ``lr_scale(name)`` multiplies a parameter's learning rate (layer-wise decay in fine-tuning)."""
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim <= 1 or name in no_decay)
        scale = 1.0 if lr_scale is None else float(lr_scale(name))
        groups.setdefault((decays, scale), []).append(param)
    return [
        {"params": params, "weight_decay": weight_decay if decays else 0.0, "lr": lr * scale}
        for (decays, scale), params in sorted(groups.items(), key=lambda item: (not item[0][0], -item[0][1]))
    ]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


@dataclass
class TrainLoop:
    """Optimises ``model`` with ``step_fn`` for ``config.steps`` steps, checkpointing into ``folder``.

    ``make_meta(step, complete)`` builds the checkpoint metadata; ``after_step(step, total)`` runs after each
    optimiser step (EMA, schedules); ``batches(start_step)`` yields batches from a given step on.

    Model selection (fine-tuning): with ``validate`` (a score, higher is better, computed with the model in eval
    mode) the loop scores the model every ``validate_every`` steps and after the last step, keeps the weights of
    the best score (the earliest among ties) and ends with them; ``best_step``/``best_score``/``history`` record
    it. Such a run is not resumed mid-way: the best weights so far are not part of the checkpoint.
    """

    model: nn.Module
    step_fn: Callable[[Any], LossOutput]
    config: PretrainConfig
    folder: Path
    make_meta: Callable[[int, bool], ckpt.CheckpointMeta]
    after_step: Callable[[int, int], None] | None = None
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
        device = resolve_device(cfg.device)
        self.model.to(device)
        groups = param_groups(self.model, cfg.weight_decay, set(self.no_decay), cfg.effective_lr, self.lr_scale)
        optimizer = torch.optim.AdamW(groups, lr=cfg.effective_lr, betas=cfg.betas)
        start = 0 if self.validate is not None else self._resume(optimizer, device)
        best_state: dict[str, torch.Tensor] | None = None
        warmup = int(cfg.warmup_fraction * cfg.steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, cfg.steps, warmup, cfg.min_lr_ratio), last_epoch=start - 1
        )
        last = cfg.steps if self.stop_after is None else min(cfg.steps, self.stop_after)
        self.model.train()
        pending: dict[str, list[float]] = {}
        iterator = batches(start)
        step = start
        with progress_bar() as progress:
            task = progress.add_task(self.description, total=cfg.steps, completed=start, info="")
            for step in range(start, last):
                torch.manual_seed(step_seed(cfg.seed, step))
                batch = next(iterator)
                batch = batch.to(device) if hasattr(batch, "to") else batch
                with autocast(device, cfg.amp):
                    out = self.step_fn(batch)
                self._check_finite(out, step)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                terms = {"loss": float(out.loss.detach()), **{k: float(v) for k, v in out.terms.items()}}
                if cfg.grad_clip > 0:
                    terms["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                terms["lr"] = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                if self.after_step is not None:
                    self.after_step(step + 1, cfg.steps)
                for key, value in terms.items():
                    pending.setdefault(key, []).append(value)
                if (step + 1) % cfg.log_every == 0 or step + 1 == last:
                    self._flush(pending, step + 1)
                progress.update(task, advance=1, info=f"loss {terms['loss']:.4f}")
                if self._should_validate(step + 1, last):
                    best_state = self._select(step + 1, best_state) or best_state
                elif (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps and self.validate is None:
                    self._save(optimizer, step + 1, complete=False)
            step = last
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.to("cpu")
        if step >= cfg.steps:
            self._save(None, step, complete=True)
        else:
            self._save(optimizer, step, complete=False)
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
