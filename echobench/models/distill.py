"""Teacher–student self-distillation parts (DINO, Caron et al. 2021), shared by DINO-style plugins such as DISCOVER.

The head, the cross-entropy between a centred sharpened teacher and the student, the centre EMA, the parameter EMA
of the teacher, a linear schedule for momenta and DINO's per-epoch teacher-temperature warm-up. Functions are pure
except ``ema_update_``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """Bias-free linear layer with weight normalisation ``W = g · v / ‖v‖`` (row-wise norm, Salimans & Kingma 2016).

    ``weight_v`` and ``weight_g`` are plain parameters and the weight is computed in ``forward``, so the module
    deep-copies and round-trips through safetensors (the hooks of ``nn.utils.weight_norm`` do neither reliably).
    The names match DINO's checkpoints (``last_layer.weight_g``, ``last_layer.weight_v``).
    """

    def __init__(self, in_dim: int, out_dim: int, train_gain: bool = True) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        # nn.Linear's default init, as DINO's last layer (created after its trunc-normal pass) keeps it.
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=train_gain)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_g * F.normalize(self.weight_v, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """DINO projection head: MLP (GELU) → bottleneck → L2-normalise → weight-normalised linear to ``out_dim``.

    ``nlayers`` linear layers in the MLP (``in → hidden → … → bottleneck``), trunc-normal init (std 0.02), zero
    biases. ``norm_last_layer=True`` fixes the gain ``g`` of the last layer at 1 (``requires_grad=False``), so the
    prototypes stay unit vectors, as DINO recommends for stability.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"nlayers must be >= 1, got {nlayers}")
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if i > 0:
                layers.append(nn.GELU())
            layers.append(nn.Linear(d_in, d_out))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, train_gain=not norm_last_layer)

    def last_layer_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the last layer, for DINO's ``cancel_gradients_last_layer`` (no update in the first epoch)."""
        return self.last_layer.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def dino_loss(
    student_logits: Sequence[torch.Tensor],
    teacher_logits: torch.Tensor | Sequence[torch.Tensor],
    center: torch.Tensor,
    tau_s: float,
    tau_t: float,
    skip_same_index: bool = True,
) -> torch.Tensor:
    """DINO's cross-entropy over view pairs (DINO Eqs. 1–3, centred; DISCOVER Eqs. 3–6), mean over pairs and batch.

    For a pair (teacher view t, student view s), each ``(B, K)``: ``−Σ_k softmax((t − c)/τ_t)_k ·
    log_softmax(s/τ_s)_k`` per sample, averaged over the batch; the loss is the mean over pairs. The teacher side
    is detached (stop-gradient). Pairs:

    - ``teacher_logits`` a single ``(B, K)`` tensor: every student view against it (DISCOVER: full-clip teacher vs
      each masked student view).
    - ``teacher_logits`` a list of (global) views: every student view ``j`` against every teacher view ``i``, except
      ``j == i`` when ``skip_same_index`` (DINO: student views listed with the global views first, so index ``i``
      is the same crop as teacher view ``i``).

    Computed in float32. ``center`` broadcasts against ``(B, K)`` (shape ``(K,)`` or ``(1, K)``).
    """
    if isinstance(teacher_logits, torch.Tensor):
        teachers, skip = [teacher_logits], False
    else:
        teachers, skip = list(teacher_logits), skip_same_index
    targets = [F.softmax((t.detach().float() - center.detach().float()) / tau_t, dim=-1) for t in teachers]
    log_probs = [F.log_softmax(s.float() / tau_s, dim=-1) for s in student_logits]
    terms = [
        -(q * log_p).sum(dim=-1).mean()
        for i, q in enumerate(targets)
        for j, log_p in enumerate(log_probs)
        if not (skip and i == j)
    ]
    if not terms:
        raise ValueError(
            f"dino_loss has no (teacher, student) pair: {len(teachers)} teacher and {len(log_probs)} student views "
            f"with skip_same_index={skip_same_index}"
        )
    return torch.stack(terms).mean()


@torch.no_grad()
def update_center(
    center: torch.Tensor,
    teacher_logits: torch.Tensor | Sequence[torch.Tensor],
    momentum: float = 0.9,
    all_reduce: bool = False,
) -> torch.Tensor:
    """Centre EMA (DINO Eq. 4): ``c ← m·c + (1 − m)·mean_batch(teacher logits)``; returns a new tensor.

    ``teacher_logits``: ``(B, K)`` or a list of views, all averaged together. Under DDP the batch mean must be over
    the global batch: ``all_reduce=True`` sums over ranks with ``torch.distributed.all_reduce`` when a process group
    is initialised (without one the local mean is the global mean).
    """
    logits = teacher_logits if isinstance(teacher_logits, torch.Tensor) else torch.cat(list(teacher_logits))
    total = logits.detach().float().sum(dim=0)
    count = logits.shape[0]
    if all_reduce and dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
        count *= dist.get_world_size()
    batch_mean = (total / count).reshape(center.shape).to(center.dtype)
    return center * momentum + batch_mean * (1.0 - momentum)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place ``θ_teacher ← m·θ_teacher + (1 − m)·θ_student`` per parameter name; buffers are copied.

    Parameters and buffers are matched by name; a name or shape present on one side only raises ``ValueError``
    naming it. A buffer the teacher must keep for itself (not the student's) belongs outside ``teacher``.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    for kind, teacher_items, student_items in (
        ("parameter", dict(teacher.named_parameters()), dict(student.named_parameters())),
        ("buffer", dict(teacher.named_buffers()), dict(student.named_buffers())),
    ):
        for name in [*teacher_items, *(n for n in student_items if n not in teacher_items)]:
            t, s = teacher_items.get(name), student_items.get(name)
            if t is None or s is None:
                side = "student" if t is None else "teacher"
                raise ValueError(f"EMA {kind} {name!r} exists only in the {side}; teacher and student must match")
            if t.shape != s.shape:
                raise ValueError(
                    f"EMA {kind} {name!r} has shape {tuple(t.shape)} in the teacher, {tuple(s.shape)} in the student"
                )
            if kind == "parameter":
                t.mul_(momentum).add_(s.detach().to(t.dtype), alpha=1.0 - momentum)
            else:
                t.copy_(s)


def linear_schedule(start: float, end: float, progress: float) -> float:
    """``start + (end − start)·p`` with ``p = progress`` clamped to [0, 1].

    A pure function of training progress, so resume is exact: e.g. V-JEPA's EMA momentum
    ``linear_schedule(0.998, 1.0, progress)``.
    """
    p = min(max(progress, 0.0), 1.0)
    return start + (end - start) * p


def teacher_temperature(epoch: int, warmup_epochs: int, start: float = 0.04, end: float = 0.07) -> float:
    """DINO's teacher temperature τ_t in (integer) ``epoch``, constant within the epoch: ``linspace(start, end,
    warmup_epochs)[epoch]`` during the warm-up and ``end`` after it (code: facebookresearch/dino main_dino.py
    ``DINOLoss.teacher_temp_schedule``; mdivyanshu97/DISCOVR models/modeling_pretrain.py ``teacher_temp_schedule``).

    So τ_t reaches ``end`` in epoch ``warmup_epochs − 1`` (epoch 29 of a 30-epoch warm-up); a one-epoch warm-up
    is ``start`` in epoch 0, and no warm-up is ``end`` throughout, as numpy's ``linspace`` of 1 and 0 points.
    """
    if epoch < 0 or warmup_epochs < 0:
        raise ValueError(f"epoch and warmup_epochs must be >= 0, got {epoch} and {warmup_epochs}")
    if epoch >= warmup_epochs:
        return end
    if warmup_epochs == 1:
        return start
    return start + epoch * ((end - start) / (warmup_epochs - 1))


def warmup_epochs_of_run(fraction: float, total_steps: int, steps_per_epoch: int) -> int:
    """Whole warm-up epochs that are ``fraction`` of a run of ``total_steps / steps_per_epoch`` epochs, rounded to
    the nearest integer (halves up): 30/400 of a 400-epoch run is 30, of a 40-epoch run 3, of a run shorter than
    6⅔ epochs 0 (no warm-up)."""
    if fraction < 0 or total_steps < 0 or steps_per_epoch < 1:
        raise ValueError(
            f"need fraction >= 0, total_steps >= 0, steps_per_epoch >= 1; got {fraction}, {total_steps}, "
            f"{steps_per_epoch}"
        )
    return math.floor(fraction * total_steps / steps_per_epoch + 0.5)
