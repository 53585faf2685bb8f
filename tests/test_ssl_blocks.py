"""Shared SSL building blocks: Sinkhorn–Knopp, DINO head/loss/EMA, multiblock masks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from echobench.errors import UserError
from echobench.models.distill import DINOHead, dino_loss, ema_update_, linear_schedule, update_center
from echobench.models.masking import multiblock_mask
from echobench.models.sinkhorn import _log_plan, sinkhorn_knopp


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uniform_scores(n: int, k: int, low: float, high: float, seed: int = 0) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, k, generator=gen(seed), dtype=torch.float64)


# --- Sinkhorn–Knopp ----------------------------------------------------------------------------------------------


def numpy_sinkhorn(scores: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """SwAV's Algorithm 1 written directly (exp, then alternate sums), in float64."""
    q = np.exp(scores / eps).T  # (K, N)
    k, n = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= n
    return (q * n).T


def test_sinkhorn_uniform_scores_give_uniform_assignments() -> None:
    q = sinkhorn_knopp(torch.full((6, 4), 0.3))
    np.testing.assert_allclose(q.numpy(), np.full((6, 4), 0.25), rtol=0, atol=1e-7)


def test_sinkhorn_marginals_before_last_scaling() -> None:
    scores = uniform_scores(7, 5, -1.0, 1.0)
    plan = _log_plan(scores, eps=0.5, iters=50).double().exp()
    np.testing.assert_allclose(plan.sum(dim=0).numpy(), np.full(5, 1 / 5), rtol=0, atol=1e-6)
    np.testing.assert_allclose(plan.sum(dim=1).numpy(), np.full(7, 1 / 7), rtol=0, atol=1e-6)
    q = sinkhorn_knopp(scores, eps=0.5, iters=50)
    np.testing.assert_allclose(q.sum(dim=1).numpy(), np.ones(7), rtol=0, atol=1e-6)
    np.testing.assert_allclose(q.sum(dim=0).numpy(), np.full(5, 7 / 5), rtol=0, atol=1e-5)


def test_sinkhorn_matches_direct_numpy_form() -> None:
    scores = uniform_scores(6, 4, -1.0, 1.0, seed=3)
    for iters in (1, 3, 10):
        expected = numpy_sinkhorn(scores.numpy(), eps=0.5, iters=iters)
        np.testing.assert_allclose(sinkhorn_knopp(scores, eps=0.5, iters=iters).numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("low", "high", "eps"), [(-1.0, 1.0, 0.005), (-5.0, 5.0, 0.005)])
def test_sinkhorn_finite_where_direct_form_overflows(low: float, high: float, eps: float) -> None:
    scores = uniform_scores(16, 8, low, high, seed=1).float()
    scores[0, 0] = high  # |scores/eps| reaches 200 and 1000
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(numpy_sinkhorn(scores.numpy(), eps, 10)).all()  # float32, as SwAV runs it
        reference = numpy_sinkhorn(scores.double().numpy(), eps, 10)
    for dtype in (torch.float32, torch.bfloat16):
        q = sinkhorn_knopp(scores.to(dtype), eps=eps)
        assert q.dtype == torch.float32
        assert torch.isfinite(q).all()
        np.testing.assert_allclose(q.sum(dim=1).numpy(), np.ones(16), rtol=0, atol=1e-5)
    if np.isfinite(reference).all():  # float64 still holds exp(200), not exp(1000)
        np.testing.assert_allclose(sinkhorn_knopp(scores, eps=eps).numpy(), reference, rtol=0, atol=1e-5)


def test_sinkhorn_has_no_gradient() -> None:
    scores = torch.randn(4, 3, requires_grad=True)
    assert not sinkhorn_knopp(scores).requires_grad


# --- DINO loss, centre, EMA, schedule -------------------------------------------------------------------------------


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_cross_entropy(teacher: np.ndarray, student: np.ndarray, center: np.ndarray, tau_s: float, tau_t: float) -> float:
    q = np_softmax((teacher - center) / tau_t)
    return float(np.mean(-(q * np.log(np_softmax(student / tau_s))).sum(axis=-1)))


STUDENTS = [np.array([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]]), np.array([[-0.2, 0.4, 0.9], [1.5, 0.0, -0.3]])]
TEACHERS = [np.array([[0.7, 0.1, -0.4], [-0.6, 0.9, 0.2]]), np.array([[0.2, -0.8, 0.5], [0.4, 0.4, -0.1]])]
CENTER = np.array([[0.1, -0.2, 0.05]])


def test_dino_loss_single_teacher_matches_hand_computation() -> None:
    students = [torch.tensor(s, requires_grad=True) for s in STUDENTS]
    teacher = torch.tensor(TEACHERS[0], requires_grad=True)
    loss = dino_loss(students, teacher, torch.tensor(CENTER), tau_s=0.1, tau_t=0.04)
    expected = np.mean([np_cross_entropy(TEACHERS[0], s, CENTER, 0.1, 0.04) for s in STUDENTS])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in students)
    assert teacher.grad is None


def test_dino_loss_teacher_views_skip_same_index() -> None:
    students = [torch.tensor(s) for s in STUDENTS]
    teachers = [torch.tensor(t) for t in TEACHERS]
    center = torch.tensor(CENTER)
    crossed = dino_loss(students, teachers, center, tau_s=0.1, tau_t=0.05)
    expected = np.mean(
        [np_cross_entropy(TEACHERS[0], STUDENTS[1], CENTER, 0.1, 0.05)]
        + [np_cross_entropy(TEACHERS[1], STUDENTS[0], CENTER, 0.1, 0.05)]
    )
    assert crossed.item() == pytest.approx(expected, rel=1e-6)
    every_pair = dino_loss(students, teachers, center, tau_s=0.1, tau_t=0.05, skip_same_index=False)
    expected_all = np.mean([np_cross_entropy(t, s, CENTER, 0.1, 0.05) for t in TEACHERS for s in STUDENTS])
    assert every_pair.item() == pytest.approx(expected_all, rel=1e-6)
    with pytest.raises(ValueError, match="no \\(teacher, student\\) pair"):
        dino_loss(students[:1], teachers[:1], center, tau_s=0.1, tau_t=0.05)


def test_update_center_is_an_ema_of_the_batch_mean() -> None:
    center = torch.tensor([[1.0, 0.0, -1.0]])
    views = [torch.tensor(t, dtype=torch.float32) for t in TEACHERS]
    new = update_center(center, views, momentum=0.9)
    batch_mean = np.concatenate(TEACHERS).mean(axis=0, keepdims=True)
    np.testing.assert_allclose(new.numpy(), 0.9 * center.numpy() + 0.1 * batch_mean, rtol=0, atol=1e-7)
    assert center.tolist() == [[1.0, 0.0, -1.0]]
    single = update_center(torch.zeros(3), views[0], momentum=0.5)
    np.testing.assert_allclose(single.numpy(), 0.5 * TEACHERS[0].mean(axis=0), rtol=0, atol=1e-7)


class Tiny(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        nn.init.constant_(self.linear.weight, value)
        nn.init.constant_(self.linear.bias, -value)
        self.register_buffer("count", torch.tensor([value]))


def test_ema_update_mixes_parameters_and_copies_buffers() -> None:
    teacher, student = Tiny(1.0), Tiny(3.0)
    ema_update_(teacher, student, momentum=0.75)
    np.testing.assert_allclose(teacher.linear.weight.detach().numpy(), np.full((2, 2), 1.5), rtol=0, atol=1e-7)
    np.testing.assert_allclose(teacher.linear.bias.detach().numpy(), np.full(2, -1.5), rtol=0, atol=1e-7)
    assert teacher.count.tolist() == [3.0]
    assert student.linear.weight.detach().eq(3.0).all()


def test_ema_update_names_the_mismatch() -> None:
    student = Tiny(1.0)
    student.extra = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="'extra' exists only in the student"):
        ema_update_(Tiny(0.0), student, momentum=0.9)
    wide = Tiny(0.0)
    wide.linear = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="'linear.weight' has shape"):
        ema_update_(wide, Tiny(1.0), momentum=0.9)


def test_linear_schedule_interpolates_and_clamps() -> None:
    assert linear_schedule(0.04, 0.07, 0.0) == pytest.approx(0.04)
    assert linear_schedule(0.04, 0.07, 0.5) == pytest.approx(0.055)
    assert linear_schedule(0.04, 0.07, 1.7) == pytest.approx(0.07)
    assert linear_schedule(0.998, 1.0, -0.2) == pytest.approx(0.998)


# --- DINO head ---------------------------------------------------------------------------------------------------


def tiny_head(**kwargs: object) -> DINOHead:
    torch.manual_seed(0)
    return DINOHead(8, 16, hidden_dim=12, bottleneck_dim=6, **kwargs)  # type: ignore[arg-type]


def test_dino_head_shapes_and_normalised_last_layer() -> None:
    head = tiny_head()
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 16) and torch.isfinite(out).all()
    # Unit prototypes and a unit bottleneck: every logit is a cosine.
    assert out.abs().max() <= 1.0 + 1e-6
    np.testing.assert_allclose(head.last_layer.weight.norm(dim=1).detach().numpy(), np.ones(16), rtol=0, atol=1e-6)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 12), (12, 12), (12, 6)]
    assert all(m.bias.eq(0).all() for m in linears)


def test_dino_head_gain_fixed_only_with_norm_last_layer() -> None:
    fixed = tiny_head()
    trainable = {n for n, p in fixed.named_parameters() if p.requires_grad}
    assert "last_layer.weight_g" not in trainable and "last_layer.weight_v" in trainable
    free = tiny_head(norm_last_layer=False)
    assert free.last_layer.weight_g.requires_grad
    assert set(fixed.last_layer_parameters()) == {fixed.last_layer.weight_g, fixed.last_layer.weight_v}


def test_dino_head_deepcopy_and_safetensors_round_trip(tmp_path: object) -> None:
    head = tiny_head()
    x = torch.randn(3, 8)
    clone = copy.deepcopy(head)
    torch.testing.assert_close(clone(x), head(x), rtol=0, atol=0)
    assert not clone.last_layer.weight_g.requires_grad
    path = f"{tmp_path}/head.safetensors"
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, path)
    fresh = DINOHead(8, 16, hidden_dim=12, bottleneck_dim=6)
    fresh.load_state_dict(load_file(path))
    torch.testing.assert_close(fresh(x), head(x), rtol=0, atol=0)


# --- multiblock masks (V-JEPA's collator rule: tests/test_vjepa_masks.py) ----------------------------------------


def test_multiblock_blocks_are_filled_rectangles_of_the_formula_size_spanning_time() -> None:
    grid = (3, 40, 40)
    area = int(0.2 * 40 * 40)
    generator = gen(5)
    heights = set()
    for _ in range(20):
        masks = multiblock_mask(1, grid, generator, scale=0.2, count=1, aspect=(0.75, 1.5))
        frames = masks.predicted.reshape(3, 40, 40)
        assert frames.eq(frames[0]).all()  # the same rectangle at every t'
        rows, cols = frames[0].nonzero(as_tuple=True)
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(frames[0].sum()) == h * w  # a filled rectangle
        assert round(math.sqrt(area * 0.75)) <= h <= round(math.sqrt(area * 1.5))
        assert round(math.sqrt(area / 1.5)) <= w <= round(math.sqrt(area / 0.75))
        assert abs(h * w - area) <= (h + w) / 2 + 1
        assert torch.equal(masks.context, ~masks.predicted)  # one row: nothing to trim
        heights.add(h)
    assert len(heights) > 1


def test_multiblock_deterministic_in_generator() -> None:
    first = multiblock_mask(4, (4, 8, 8), gen(7), scale=0.15, count=4)
    again = multiblock_mask(4, (4, 8, 8), gen(7), scale=0.15, count=4)
    other = multiblock_mask(4, (4, 8, 8), gen(8), scale=0.15, count=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first.predicted, other.predicted)


@pytest.mark.parametrize(
    "grid, scale, count, aspect, message",
    [
        ((2, 4, 4), 0.0, 1, (0.75, 1.5), r"scale must be in \(0, 1\] and count >= 1"),
        ((2, 4, 4), 0.5, 0, (0.75, 1.5), r"scale must be in \(0, 1\] and count >= 1"),
        ((2, 4, 4), 0.5, 1, (1.5, 0.75), "0 < min <= max"),
        ((2, 4, 4), 0.05, 1, (0.75, 1.5), "empty block on the 4x4 token frame"),  # int(0.8) = 0 tokens
        ((2, 4, 4), 1.0, 1, (1.0, 1.0), "covering the whole 4x4 token frame"),
        ((2, 14, 14), 0.95, 2, (0.75, 1.5), "covering the whole 14x14 token frame"),  # 14x14 for ratios near 1
    ],
)
def test_multiblock_rejects_geometries_without_a_block_or_a_context(grid, scale, count, aspect, message) -> None:
    with pytest.raises(UserError, match=message):
        multiblock_mask(2, grid, gen(0), scale=scale, count=count, aspect=aspect)
