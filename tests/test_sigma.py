"""SIGMA: Sinkhorn cluster targets and the swapped hard cross-entropy against independent numpy computations."""

from __future__ import annotations

import math

import numpy as np
import torch

from echobench.api import TrainState
from echobench.validate import TINY, tiny_batch
from echobench_plugins.sigma import Sigma, SigmaConfig
from echobench_plugins.sigma.losses import hard_assignments, prototype_scores, swapped_cross_entropy


def swav_sinkhorn(scores: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """SwAV's Algorithm 1 in the direct (non-log) form, float64."""
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, n = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= n
    return (q * n).T


def hand_cross_entropy(scores: np.ndarray, targets: np.ndarray, tau: float) -> float:
    total = 0.0
    for row, target in zip(scores, targets, strict=True):
        logits = row / tau
        total += math.log(sum(math.exp(v) for v in logits)) - logits[target]
    return total / len(scores)


def scores_pair(seed: int = 0, n: int = 24, k: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(k, 8, generator=generator)
    prediction = prototype_scores(torch.randn(n, 8, generator=generator), prototypes)
    pixels = prototype_scores(torch.randn(n, 8, generator=generator), prototypes)
    return prediction.double(), pixels.double()


def test_prototype_scores_are_cosines() -> None:
    features = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    prototypes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -5.0]])
    expected = [[0.6, 7 / (5 * math.sqrt(2)), -0.8], [0.0, 1 / math.sqrt(2), -1.0]]
    assert np.allclose(prototype_scores(features, prototypes).numpy(), expected, atol=1e-6)


def test_targets_are_argmax_of_balanced_sinkhorn_assignments() -> None:
    _, pixels = scores_pair()
    reference = swav_sinkhorn(pixels.numpy(), eps=0.05, iters=10)
    # A valid assignment: each token's row is a distribution; after 10 rounds each prototype receives close to N/K
    # of the mass, far closer than the unbalanced softmax of the scores does.
    assert np.allclose(reference.sum(axis=1), 1.0)
    share = len(reference) / reference.shape[1]
    softmax = torch.softmax(pixels / 0.05, dim=1).numpy()
    assert np.abs(reference.sum(axis=0) - share).max() < 0.15 * share
    assert np.abs(reference.sum(axis=0) - share).max() < np.abs(softmax.sum(axis=0) - share).max() / 3
    targets = hard_assignments(pixels, eps=0.05, iters=10)
    assert targets.dtype == torch.int64
    assert targets.tolist() == reference.argmax(axis=1).tolist()
    # Equipartition spreads the hard targets over prototypes, unlike the plain argmax of the scores.
    assert len(set(targets.tolist())) >= 4


def test_swapped_cross_entropy_equals_hand_computation() -> None:
    prediction, pixels = scores_pair(seed=1)
    tau = 0.1
    out = swapped_cross_entropy(prediction, pixels, tau=tau, eps=0.05, iters=10)
    pixel_targets = swav_sinkhorn(pixels.numpy(), 0.05, 10).argmax(axis=1)
    prediction_targets = swav_sinkhorn(prediction.numpy(), 0.05, 10).argmax(axis=1)
    to_pixels = hand_cross_entropy(prediction.numpy(), pixel_targets, tau)
    to_prediction = hand_cross_entropy(pixels.numpy(), prediction_targets, tau)
    assert math.isclose(float(out.prediction_to_pixels), to_pixels, rel_tol=1e-9)
    assert math.isclose(float(out.pixels_to_prediction), to_prediction, rel_tol=1e-9)
    assert math.isclose(float(out.loss), (to_pixels + to_prediction) / 2, rel_tol=1e-9)


def test_targets_carry_no_gradient_and_both_branches_train() -> None:
    prediction, pixels = (s.clone().requires_grad_() for s in scores_pair(seed=2))
    swapped_cross_entropy(prediction, pixels, tau=0.1, eps=0.05, iters=10).loss.backward()
    assert prediction.grad is not None and pixels.grad is not None
    assert prediction.grad.abs().sum() > 0 and pixels.grad.abs().sum() > 0

    config = SigmaConfig(**TINY, num_prototypes=32, decoder_depth=1)
    torch.manual_seed(0)
    method = Sigma(config)
    batch = tiny_batch(method.clip_spec(), 2, config.in_chans)
    method.pretrain_step(batch, TrainState.at(0, 1, 1)).loss.backward()
    for module in (method.projector, method.decoder, method.encoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert method.prototypes.grad is not None and method.prototypes.grad.abs().sum() > 0
    assert method.decoder.head.out_features == config.projection_dim


def test_invalid_config_names_the_field() -> None:
    for field, value in (("num_prototypes", 0), ("temperature", 0.0), ("sinkhorn_eps", -1.0)):
        try:
            Sigma(SigmaConfig(**TINY, **{field: value}))
        except ValueError as exc:
            assert field in str(exc)
        else:
            raise AssertionError(f"{field}={value} was accepted")
