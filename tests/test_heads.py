"""Downstream heads over the token grid: gated pooling, attentive probe, STFF-Net, max pooling, segmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from echobench.errors import UserError
from echobench.models.heads import (
    AttentiveProbe,
    GatedAttentionPool,
    LinearUpsampleSegHead,
    MaxPoolHead,
    TransposedConvSegHead,
)
from echobench.models.stff import STFFHead


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_gated_attention_pool_matches_ilse_formula() -> None:
    pool = GatedAttentionPool(dim=2, hidden=2)
    V = [[1.0, 0.0], [0.5, -1.0]]
    U = [[0.0, 2.0], [1.0, 1.0]]
    w = [1.0, -2.0]
    with torch.no_grad():
        pool.V.weight.copy_(torch.tensor(V))
        pool.U.weight.copy_(torch.tensor(U))
        pool.w.weight.copy_(torch.tensor([w]))
    h = [[0.2, -0.4], [1.0, 0.3], [-0.7, 0.9]]

    scores = []
    for hk in h:
        v = [math.tanh(V[j][0] * hk[0] + V[j][1] * hk[1]) for j in range(2)]
        u = [1 / (1 + math.exp(-(U[j][0] * hk[0] + U[j][1] * hk[1]))) for j in range(2)]
        scores.append(sum(w[j] * v[j] * u[j] for j in range(2)))
    a = [math.exp(s) / sum(math.exp(s2) for s2 in scores) for s in scores]
    expected = [sum(a[k] * h[k][c] for k in range(3)) for c in range(2)]

    pooled, weights = pool(torch.tensor([h]))
    np.testing.assert_allclose(weights[0].detach().numpy(), a, rtol=1e-6)
    np.testing.assert_allclose(pooled[0].detach().numpy(), expected, rtol=1e-6)


def test_gated_attention_weights_sum_to_one() -> None:
    torch.manual_seed(0)
    _, weights = GatedAttentionPool(dim=6, hidden=4)(randn(3, 10, 6))
    assert weights.shape == (3, 10)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))


def test_attentive_probe_shape_and_permutation_invariance() -> None:
    torch.manual_seed(0)
    probe = AttentiveProbe(dim=8, outputs=3, num_heads=2).eval()
    tokens = randn(2, 2, 3, 3, 8)
    out = probe(tokens)
    assert out.shape == (2, 3)
    flat = tokens.flatten(1, 3)
    permuted = flat[:, torch.randperm(18, generator=torch.Generator().manual_seed(1))]
    torch.testing.assert_close(probe(permuted), out)
    assert not torch.allclose(probe(tokens + randn(2, 2, 3, 3, 8, seed=2)), out)


def test_attentive_probe_matches_explicit_softmax_attention() -> None:
    torch.manual_seed(0)
    probe = AttentiveProbe(dim=4, outputs=1, num_heads=1).eval()
    tokens = randn(1, 5, 4)
    x = probe.norm1(tokens)[0]
    q = probe.q(probe.query[0])
    k, v = probe.kv(x).chunk(2, dim=-1)
    attention = torch.softmax(q @ k.T / 2.0, dim=-1)
    pooled = probe.query[0] + probe.proj(attention @ v)
    pooled = pooled + probe.mlp(probe.norm2(pooled))
    torch.testing.assert_close(probe.pool(tokens), pooled)


def test_max_pool_head_is_linear_of_channel_max() -> None:
    head = MaxPoolHead(dim=3, outputs=2)
    tokens = randn(2, 2, 2, 2, 3)
    expected = head.head(tokens.flatten(1, 3).max(dim=1).values)
    torch.testing.assert_close(head(tokens), expected)


def stff(**kwargs: object) -> STFFHead:
    torch.manual_seed(0)
    return STFFHead(8, 2, spatial=(2, 3), **kwargs)  # type: ignore[arg-type]


def test_stff_output_shape_and_gradients_reach_both_pathways() -> None:
    head = stff()
    tokens = randn(2, 4, 2, 3, 8)
    out = head(tokens, torch.tensor([[0.0, 4, 8, 12], [1, 5, 9, 13]]))
    assert out.shape == (2, 2)
    assert head.embed(tokens).shape == (2, 16)
    out.square().sum().backward()
    for param in (
        head.joint_block.conv1.weight,
        head.joint_pool.V.weight,
        head.frame_block.conv1.weight,
        head.collapse.weight,
        head.time_mlp[0].weight,
        head.disjoint_pool.U.weight,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_stff_uses_real_frame_indices() -> None:
    head = stff().eval()
    tokens = randn(2, 4, 2, 3, 8)
    ordinal = torch.arange(4.0).expand(2, 4)
    sparse = ordinal * 8 + 3
    base = head(tokens, ordinal)
    torch.testing.assert_close(head(tokens, None), base)
    assert not torch.allclose(head(tokens, sparse), base)
    # only the disjoint half of the representation sees the frame times
    torch.testing.assert_close(head.embed(tokens, sparse)[:, :8], head.embed(tokens, ordinal)[:, :8])

    unaware = stff(frame_indices_aware=False).eval()
    torch.testing.assert_close(unaware(tokens, sparse), unaware(tokens, ordinal))


def test_stff_eval_is_deterministic_and_batch_independent() -> None:
    head = stff()
    tokens = randn(3, 2, 2, 3, 8)
    head(tokens)  # one training step updates the BatchNorm running statistics
    head.eval()
    out = head(tokens)
    torch.testing.assert_close(head(tokens), out, rtol=0, atol=0)
    torch.testing.assert_close(head(tokens[1:2]), out[1:2])


def test_stff_rejects_wrong_grid() -> None:
    with pytest.raises(ValueError, match="STFFHead expects"):
        stff()(randn(1, 2, 3, 3, 8))
    with pytest.raises(UserError):
        STFFHead(8, 2, spatial=(0, 2))


SEG_HEADS = [LinearUpsampleSegHead, TransposedConvSegHead]


@pytest.mark.parametrize("head_cls", SEG_HEADS)
@pytest.mark.parametrize("patch", [8, 16])
def test_seg_head_shape_and_frame_selection(head_cls: type[nn.Module], patch: int) -> None:
    torch.manual_seed(0)
    side = 32 // patch
    head = head_cls(8, 3, patch, 32)
    tokens = randn(2, 3, side, side, 8)
    assert head(tokens).shape == (2, 3, 32, 32)
    picked = head(tokens, torch.tensor([2, 0]))
    torch.testing.assert_close(picked[0], head(tokens[:1, 2:3])[0])
    torch.testing.assert_close(picked[1], head(tokens[1:, 0:1])[0])
    torch.testing.assert_close(head(tokens), head(tokens.mean(dim=1, keepdim=True)))


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    return 2.0 * float((pred & target).sum()) / float(pred.sum() + target.sum())


@pytest.mark.parametrize("head_cls", SEG_HEADS)
@pytest.mark.parametrize("patch", [8, 16])
def test_seg_head_fits_left_half(head_cls: type[nn.Module], patch: int) -> None:
    torch.manual_seed(0)
    side = 32 // patch
    # channel 0 says which half a token lies in; the others are noise
    tokens = 0.1 * randn(4, 2, side, side, 8)
    tokens[..., 0] = torch.where(torch.arange(side) < side // 2, 1.0, -1.0)
    target = torch.zeros(4, 32, 32, dtype=torch.long)
    target[:, :, :16] = 1
    head = head_cls(8, 2, patch, 32)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-2)
    for _ in range(40):
        optimizer.zero_grad()
        nn.functional.cross_entropy(head(tokens), target).backward()
        optimizer.step()
    with torch.no_grad():
        pred = head(tokens, torch.tensor([0, 1, 0, 1])).argmax(dim=1).numpy() == 1
    assert dice(pred, target.numpy() == 1) > 0.9


def test_dice_helper_by_hand() -> None:
    pred = np.array([[1, 1, 0, 0]], dtype=bool)
    target = np.array([[1, 0, 0, 0]], dtype=bool)
    assert dice(pred, target) == pytest.approx(2 * 1 / 3)


def test_seg_head_config_errors() -> None:
    with pytest.raises(UserError, match="even patch"):
        TransposedConvSegHead(8, 2, 7, 28)
    with pytest.raises(UserError, match="divisible by patch"):
        LinearUpsampleSegHead(8, 2, 16, 40)
    with pytest.raises(ValueError, match="expected tokens"):
        LinearUpsampleSegHead(8, 2, 8, 32)(randn(1, 2, 2, 2, 8))
