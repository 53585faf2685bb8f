"""Frozen linear and MLP probes on cached clip embeddings.

Linear heads (``solver: auto`` or ``closed_form``) are fitted to optimality for every L2 penalty of a grid:
ridge regression in closed form, L2 logistic regression by L-BFGS (:func:`_penalised_linear_heads`); the penalty
is chosen on validation. A gradient-trained linear head barely regularises in the few steps a small training split
allows, so its test error trailed a validation-tuned ridge regression on planted-signal features
(tests/test_probe_planted.py). MLP heads (and ``solver: sgd``) train the whole lr x weight-decay grid in one pass:

As in DINOv2 and EchoJEPA, every (lr, weight decay) pair of the grid is its own head; all ``H`` heads are
stacked into batched parameters (one weight tensor ``(H, in, out)`` per layer) so each minibatch of features
updates every head at once. All heads start from the same initial weights and see the same minibatches, so a
head of the grid is exactly the head a one-setting run would train. AdamW is applied by hand with a per-head
learning rate and weight decay (PyTorch's optimiser takes one lr per parameter tensor, not per slice).

Features are standardised with the training split's mean and standard deviation. Classification heads are
trained with cross-entropy, regression heads with MSE on targets standardised by the training split (their
predictions are mapped back). Every clip is a training sample carrying its video's target; validation and
test outputs are aggregated per video (``mean``: average class probabilities or regression predictions over
clips; ``any``: binary only, a video is positive when any clip is predicted positive and its score is the
largest clip probability).

After each epoch every head is scored on validation by the task's primary metric; a head keeps its best
epoch's weights and stops training (leaves the stack) after ``patience`` epochs without improvement. The best head on
validation (the first in grid order among ties, ``lrs`` outer and ``weight_decays`` inner) is then
evaluated once on test. Initialisation (PyTorch's ``nn.Linear`` rule, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
for weights and biases, drawn layer by layer) and each epoch's shuffling come from one ``torch.Generator``
seeded with the run's seed, so a run is deterministic on a given device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from echobench.data.tasks import Task
from echobench.errors import UserError
from echobench.protocols.base import FeatureSet, ProtocolResult, check_split, config_from_mapping
from echobench.protocols.readout import Pool, check_pool
from echobench.protocols.scoring import (
    AGGREGATES,
    Aggregate,
    first_best,
    interval_unit,
    intervals,
    predictions_frame,
    primary_metric,
    task_metrics,
    video_outputs,
)

Head = Literal["linear", "mlp"]
Solver = Literal["auto", "closed_form", "sgd"]
_HEADS: tuple[str, ...] = ("linear", "mlp")
#: Per-sample L2 penalties of the closed-form linear head on standardised features: three per decade from almost
#: none (1e-6) to strong (100); the ridge path costs one eigendecomposition whatever the grid's length.
DEFAULT_PENALTIES = tuple(float(f"{10 ** (e / 3):.3g}") for e in range(-18, 7))
_BETAS = (0.9, 0.999)
_EPS = 1e-8

Layers = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ProbeConfig:
    """Protocol settings; field names match ``protocols/linear.yaml`` and ``protocols/mlp.yaml``.

    ``hidden`` is used by the ``mlp`` head only (Temporal MAE: D -> 256 -> 128 -> out, ReLU). Repeats over
    seeds are the harness's (``--seeds N``), each run with its own ``seed``.
    """

    head: Head = "linear"
    hidden: tuple[int, ...] = (256, 128)
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-2)
    epochs: int = 100
    batch_size: int = 256
    patience: int = 10
    aggregate: Aggregate = "mean"
    solver: Solver = "auto"
    penalties: tuple[float, ...] = DEFAULT_PENALTIES
    pool: Pool = "mean_std"
    ci_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("head", self.head, _HEADS)
        check_pool("probe", self.pool)
        _check_choice("solver", self.solver, ("auto", "closed_form", "sgd"))
        if self.solver == "closed_form" and self.head != "linear":
            raise UserError("probe: solver closed_form fits linear heads only; use solver sgd (or auto) for mlp")
        self.penalties = tuple(_numbers("penalties", self.penalties))
        if any(p <= 0 for p in self.penalties):
            raise UserError(f"probe: penalties must all be > 0, got {self.penalties!r}")
        _check_choice("aggregate", self.aggregate, AGGREGATES)
        self.hidden = _as_tuple(self.hidden)
        if not self.hidden or not all(_is_int(h) and h >= 1 for h in self.hidden):
            raise UserError(f"probe: hidden must be a non-empty list of positive layer widths, got {self.hidden!r}")
        self.lrs = tuple(_numbers("lrs", self.lrs))
        if any(lr <= 0 for lr in self.lrs):
            raise UserError(f"probe: lrs must all be > 0, got {self.lrs!r}")
        self.weight_decays = tuple(_numbers("weight_decays", self.weight_decays))
        if any(wd < 0 for wd in self.weight_decays):
            raise UserError(f"probe: weight_decays must all be >= 0, got {self.weight_decays!r}")
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise UserError(f"probe: {name} must be a positive integer, got {value!r}")
        if not _is_int(self.ci_resamples) or self.ci_resamples < 0:
            raise UserError(f"probe: ci_resamples must be >= 0 (0 = no intervals), got {self.ci_resamples!r}")
        if not _is_int(self.seed):
            raise UserError(f"probe: seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ProbeConfig:
        """Build from a mapping (the ``config`` block of the YAML spec); unknown keys are a :class:`UserError`."""
        return config_from_mapping(cls, values, "probe")

    @property
    def closed_form(self) -> bool:
        """``auto``: linear heads are fitted in closed form (ridge / L2 logistic), MLP heads by SGD."""
        return self.solver == "closed_form" or (self.solver == "auto" and self.head == "linear")

    @property
    def depends_on_seed(self) -> bool:
        """Whether another seed can give another result: a closed-form fit reaches the same optimum from any."""
        return not self.closed_form

    @property
    def grid(self) -> list[tuple[float, float]]:
        """Every (lr, weight decay) pair, ``lrs`` outer: head ``h`` of the stack trains ``grid[h]``."""
        return [(lr, wd) for lr in self.lrs for wd in self.weight_decays]


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"probe: {name} must be one of {', '.join(allowed)}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _as_tuple(value: object) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _numbers(name: str, value: object) -> list[float]:
    items = _as_tuple(value)
    if not items or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        raise UserError(f"probe: {name} must be a non-empty list of numbers, got {value!r}")
    return [float(v) for v in items]


@dataclass
class FittedProbe:
    """The head chosen on validation, with the training split's standardisation; reusable on any split.

    ``grid`` has one row per head (``lr``, ``weight_decay``, best ``epoch``, ``val_<primary metric>``);
    ``val_metrics`` are all validation metrics of the chosen head.
    """

    task: Task
    aggregate: Aggregate
    layers: Layers
    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    target_mean: float
    target_std: float
    lr: float | None
    weight_decay: float | None
    epoch: int | None
    val_metrics: dict[str, float]
    grid: pd.DataFrame
    penalty: float | None = None

    @property
    def chosen(self) -> dict[str, float | int | str]:
        if self.penalty is not None:
            return {"solver": "closed_form", "penalty": self.penalty}
        return {"lr": self.lr, "weight_decay": self.weight_decay, "epoch": self.epoch}  # type: ignore[dict-item]

    def predict(self, fs: FeatureSet) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-video ``(prediction, score)``; ``score`` (positive-class probability) is ``None`` for regression."""
        if fs.features.shape[1] != self.feature_mean.shape[0]:
            raise UserError(
                f"probe: features have dimension {fs.features.shape[1]} but the probe was trained on "
                f"{self.feature_mean.shape[0]}; encode every split with the same checkpoint"
            )
        x = _standardised(fs.features, self.feature_mean, self.feature_std, self.feature_mean.device)
        pred, score = _video_outputs(self.layers, x, fs, self.task, self.aggregate, self.target_mean, self.target_std)
        return pred[0], None if score is None else score[0]


def run_probe(train: FeatureSet, val: FeatureSet, test: FeatureSet, task: Task, config: ProbeConfig) -> ProtocolResult:
    """Train the probe grid with ``config.seed``, choose on validation, evaluate the chosen head once on test."""
    check_split("probe", "test", test, task)
    probe = fit_probe(train, val, task, config, config.seed)
    pred, score = probe.predict(test)
    ci = intervals(test.targets, pred, score, config.ci_resamples, config.seed, test.groups)
    return ProtocolResult(
        metrics=task_metrics(task, test.targets, pred, score),
        ci=ci,
        chosen=probe.chosen,
        val_metrics=probe.val_metrics,
        predictions=predictions_frame(test, pred, score),
        **interval_unit(ci, test.groups, test.num_videos),
    )


def fit_probe(
    train: FeatureSet,
    val: FeatureSet,
    task: Task,
    config: ProbeConfig,
    seed: int,
    device: str | torch.device | None = None,
) -> FittedProbe:
    """Train every head of ``config.grid`` in one pass and keep the one that is best on validation.

    ``device`` defaults to CUDA when available, else CPU.
    """
    check_split("probe", "train", train, task)
    check_split("probe", "val", val, task)
    if train.features.shape[1] != val.features.shape[1]:
        raise UserError(
            f"probe: feature dimensions differ between train ({train.features.shape[1]}) and val "
            f"({val.features.shape[1]}); re-encode all splits"
        )
    if config.aggregate == "any" and (not task.is_classification or len(task.classes) != 2):
        raise UserError(f"probe: aggregate 'any' needs a binary classification task, {task.name} is not one")
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    raw = torch.from_numpy(np.asarray(train.features, dtype=np.float32))
    mean = raw.mean(dim=0).to(dev)
    # A constant feature carries no information; dividing by 1 keeps it at 0 instead of NaN.
    spread = raw.std(dim=0, correction=0)
    std = torch.where(spread > 0, spread, 1.0).to(dev)
    target_mean, target_std = 0.0, 1.0
    if not task.is_classification:
        video_targets = np.asarray(train.targets, dtype=np.float64)
        target_mean = float(video_targets.mean())
        target_std = float(video_targets.std()) or 1.0
    x = _standardised(train.features, mean, std, dev)
    y = _training_targets(train, task, target_mean, target_std, dev)
    val_x = _standardised(val.features, mean, std, dev)
    if config.closed_form:
        layers = _penalised_linear_heads(x, y, task, config.penalties)
        pred, score = _video_outputs(layers, val_x, val, task, config.aggregate, target_mean, target_std)
        scores = primary_metric(task, val.targets, pred, score)
        epochs = np.zeros(len(config.penalties), dtype=np.int64)
        grid = pd.DataFrame({"penalty": config.penalties})
    else:
        trainer = _GridTrainer(x, y, val, val_x, task, config, target_mean, target_std)
        layers, epochs, scores = trainer.fit(seed)
        grid = pd.DataFrame(config.grid, columns=["lr", "weight_decay"])
    best = first_best(scores, task.higher_is_better)
    head = [(w[best : best + 1].clone(), b[best : best + 1].clone()) for w, b in layers]
    pred, score = _video_outputs(head, val_x, val, task, config.aggregate, target_mean, target_std)
    grid["epoch"] = epochs
    grid[f"val_{task.primary_metric}"] = scores
    lr, wd = (None, None) if config.closed_form else config.grid[best]
    return FittedProbe(
        task=task,
        aggregate=config.aggregate,
        layers=head,
        feature_mean=mean,
        feature_std=std,
        target_mean=target_mean,
        target_std=target_std,
        lr=lr,
        weight_decay=wd,
        epoch=None if config.closed_form else int(epochs[best]),
        val_metrics=task_metrics(task, val.targets, pred[0], None if score is None else score[0]),
        grid=grid,
        penalty=config.penalties[best] if config.closed_form else None,
    )


def _penalised_linear_heads(x: torch.Tensor, y: torch.Tensor, task: Task, penalties: Sequence[float]) -> Layers:
    """One linear head per penalty ``λ``, stacked ``[(W (H, D, out), b (H, out))]``, fitted to optimality.

    Regression: ridge, minimising ``mean((y − xW − b)²) + λ‖W‖²`` (scikit-learn's ``Ridge`` with
    ``alpha = n λ``), solved in closed form from one eigendecomposition of the centred Gram matrix.
    Classification: multinomial logistic regression, minimising ``mean cross-entropy + (λ/2)‖W‖²``
    (scikit-learn's ``C = 1 / (n λ)``), by L-BFGS in float64, warm-started from the next stronger penalty.
    The intercept is never penalised.
    """
    x64 = x.double()
    x_mean = x64.mean(dim=0)
    centred = x64 - x_mean
    if not task.is_classification:
        y64 = y.double()
        y_mean = y64.mean()
        eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred / len(x64))
        projected = eigvecs.T @ (centred.T @ (y64 - y_mean)) / len(x64)
        weights = torch.stack([eigvecs @ (projected / (eigvals.clamp_min(0) + lam)) for lam in penalties])
        biases = y_mean - weights @ x_mean
        return [(weights[..., None].to(x.dtype), biases[:, None].to(x.dtype))]
    classes = len(task.classes)
    w = torch.zeros(x64.shape[1], classes, dtype=torch.float64, device=x.device, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, device=x.device, requires_grad=True)
    fitted: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    for lam in sorted(penalties, reverse=True):
        optimiser = torch.optim.LBFGS([w, b], max_iter=100, tolerance_grad=1e-7, line_search_fn="strong_wolfe")

        def objective(lam: float = lam) -> torch.Tensor:
            w.grad = b.grad = None
            loss = F.cross_entropy(x64 @ w + b, y) + 0.5 * lam * w.square().sum()
            loss.backward()
            return loss

        optimiser.step(objective)  # type: ignore[no-untyped-call]
        fitted[lam] = (w.detach().clone(), b.detach().clone())
    weights = torch.stack([fitted[lam][0] for lam in penalties])
    biases = torch.stack([fitted[lam][1] for lam in penalties])
    return [(weights.to(x.dtype), biases.to(x.dtype))]


class _GridTrainer:
    """Trains the stacked heads of one grid with per-head AdamW and per-head early stopping."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        val: FeatureSet,
        val_x: torch.Tensor,
        task: Task,
        config: ProbeConfig,
        target_mean: float,
        target_std: float,
    ) -> None:
        self.x, self.y, self.val, self.val_x = x, y, val, val_x
        self.task, self.config = task, config
        self.target_mean, self.target_std = target_mean, target_std
        grid = torch.tensor(config.grid, dtype=torch.float32, device=x.device)
        self.lr, self.wd = grid[:, 0], grid[:, 1]

    def fit(self, seed: int) -> tuple[Layers, np.ndarray, np.ndarray]:
        """Best-epoch layers of every head, each head's best epoch (0 = never improved) and its val score.

        A head that runs out of patience leaves the stack, so stopped heads cost no more compute; the heads
        still training are ``live`` (indices into the grid).
        """
        cfg, n_heads, dev = self.config, len(self.config.grid), self.x.device
        generator = torch.Generator().manual_seed(seed)
        widths = [self.x.shape[1], *(cfg.hidden if cfg.head == "mlp" else ()), self._out_dim]
        initial = [p.to(dev) for p in _init_stack(widths, n_heads, generator)]
        best = [p.clone() for p in initial]
        optimiser = _StackedAdamW(initial, self.lr, self.wd)
        best_epoch = np.zeros(n_heads, dtype=np.int64)
        best_score = np.full(n_heads, -np.inf)
        live = np.arange(n_heads)
        n = len(self.x)
        for epoch in range(1, cfg.epochs + 1):
            for idx in torch.randperm(n, generator=generator).to(dev).split(cfg.batch_size):
                out = _forward(_pairs(optimiser.params), self.x[idx])
                optimiser.step(torch.autograd.grad(self._loss(out, self.y[idx]), optimiser.params))
            with torch.no_grad():
                scores = self._val_scores(_pairs(optimiser.params))
            signed = np.nan_to_num(scores if self.task.higher_is_better else -scores, nan=-np.inf)
            improved = signed > best_score[live]
            rows = torch.from_numpy(live[improved]).to(dev)
            for kept, p in zip(best, optimiser.params, strict=True):
                kept[rows] = p.detach()[torch.from_numpy(improved).to(dev)]
            best_score[live[improved]] = signed[improved]
            best_epoch[live[improved]] = epoch
            going = (epoch - best_epoch[live]) < cfg.patience
            live = live[going]
            if live.size == 0:
                break
            if not going.all():
                optimiser.keep(torch.from_numpy(going).to(dev))
        raw_best = best_score if self.task.higher_is_better else -best_score
        return _pairs(best), best_epoch, np.where(np.isinf(best_score), np.nan, raw_best)

    @property
    def _out_dim(self) -> int:
        return len(self.task.classes) if self.task.is_classification else 1

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over heads of each head's batch-mean loss, so each head's gradient is its own loss's gradient."""
        n_heads, batch = out.shape[:2]
        if self.task.is_classification:
            return F.cross_entropy(out.reshape(n_heads * batch, -1), y.repeat(n_heads), reduction="sum") / batch
        return (out[..., 0] - y).square().sum() / batch

    def _val_scores(self, layers: Layers) -> np.ndarray:
        pred, score = _video_outputs(
            layers, self.val_x, self.val, self.task, self.config.aggregate, self.target_mean, self.target_std
        )
        return primary_metric(self.task, self.val.targets, pred, score)


class _StackedAdamW:
    """AdamW (PyTorch's update, default betas and eps) whose lr and weight decay vary along dim 0 (the head).

    The optimiser owns the stacked parameters (leaf tensors that require grad); :meth:`keep` drops heads.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: torch.Tensor, weight_decay: torch.Tensor) -> None:
        self.params = [p.detach().clone().requires_grad_() for p in params]
        self.lr, self.wd = lr, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        self.steps += 1
        beta1, beta2 = _BETAS
        correction1 = 1 - beta1**self.steps
        correction2_sqrt = (1 - beta2**self.steps) ** 0.5
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            shape = (-1, *[1] * (p.dim() - 1))
            p.mul_((1 - self.lr * self.wd).view(shape))
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / correction2_sqrt).add_(_EPS)
            p.sub_((m / denom) * (self.lr / correction1).view(shape))

    def keep(self, heads: torch.Tensor) -> None:
        """Keep only the heads where the boolean mask ``heads`` is True (parameters, moments, lr, decay)."""
        self.params = [p.detach()[heads].requires_grad_() for p in self.params]
        self.exp_avg = [m[heads] for m in self.exp_avg]
        self.exp_avg_sq = [v[heads] for v in self.exp_avg_sq]
        self.lr, self.wd = self.lr[heads], self.wd[heads]


def _init_stack(widths: Sequence[int], n_heads: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``[w1, b1, w2, b2, ...]``: one ``nn.Linear``-style init, repeated for every head."""
    params: list[torch.Tensor] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        bound = fan_in**-0.5
        w = (torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
        params += [w.expand(n_heads, -1, -1).clone(), b.expand(n_heads, -1).clone()]
    return params


def _pairs(params: Sequence[torch.Tensor]) -> Layers:
    return list(zip(params[0::2], params[1::2], strict=True))


def _forward(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """Outputs ``(H, B, out)`` of all heads for one batch ``(B, D)``; ReLU between layers."""
    w0, b0 = layers[0]
    h = torch.einsum("bd,hdo->hbo", x, w0) + b0[:, None, :]
    for w, b in layers[1:]:
        h = torch.baddbmm(b[:, None, :], h.relu(), w)
    return h


def _standardised(features: np.ndarray, mean: torch.Tensor, std: torch.Tensor, dev: torch.device) -> torch.Tensor:
    return (torch.from_numpy(np.asarray(features, dtype=np.float32)).to(dev) - mean) / std


def _training_targets(train: FeatureSet, task: Task, mean: float, std: float, dev: torch.device) -> torch.Tensor:
    clip_targets = np.asarray(train.targets)[train.clip_video]
    if task.is_classification:
        return torch.from_numpy(clip_targets.astype(np.int64)).to(dev)
    return torch.from_numpy(((clip_targets - mean) / std).astype(np.float32)).to(dev)


def _video_outputs(
    layers: Layers,
    x: torch.Tensor,
    fs: FeatureSet,
    task: Task,
    aggregate: Aggregate,
    target_mean: float,
    target_std: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-video ``(prediction, score)`` of every head, each ``(H, n_videos)``; score ``None`` for regression."""
    with torch.no_grad():
        out = _forward(layers, x).cpu()
    return video_outputs(out, fs.clip_video, fs.num_videos, task, aggregate, target_mean, target_std)
