"""SIGMA: Sinkhorn cluster targets and the swapped hard cross-entropy against independent numpy computations."""

from __future__ import annotations

import math

import numpy as np
import torch

from echobench.api import TrainState
from echobench.models.masking import gather_tokens
from echobench.validate import TINY, tiny_batch
from echobench_plugins.sigma import Sigma, SigmaConfig
from echobench_plugins.sigma.losses import (
    hard_assignments,
    prototype_scores,
    renormalize_prototypes_,
    swapped_cross_entropy,
)


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


def unit_rows(a: torch.Tensor) -> torch.Tensor:
    return a / a.norm(dim=1, keepdim=True)


def features_pair(seed: int = 0, n: int = 24, k: int = 6, d: int = 8) -> tuple[torch.Tensor, ...]:
    """Decoder predictions, pixel projections ``(n, d)`` and unit prototypes ``(k, d)`` (the loss scores in float32)."""
    generator = torch.Generator().manual_seed(seed)
    prediction, projection = (torch.randn(n, d, generator=generator, dtype=torch.float64) for _ in range(2))
    return prediction, projection, unit_rows(torch.randn(k, d, generator=generator, dtype=torch.float64))


def np_cosines(features: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    return (features / np.linalg.norm(features, axis=1, keepdims=True)) @ prototypes.T


def test_prototype_scores_normalise_features_and_use_prototypes_as_given() -> None:
    features = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -2.0]])
    # Unit prototypes give cosines; a non-unit one is not rescaled (the code renormalises before scoring instead).
    expected = [[0.6, 0.36 + 0.64, -1.6], [0.0, 0.8, -2.0]]
    assert np.allclose(prototype_scores(features, prototypes).numpy(), expected, atol=1e-6)


def test_renormalisation_gives_unit_rows_in_place_and_keeps_directions() -> None:
    prototypes = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.0, -0.5], [1e-3, 1e-3]]))
    storage = prototypes.data_ptr()
    renormalize_prototypes_(prototypes)
    assert prototypes.data_ptr() == storage and prototypes.grad is None
    half = math.sqrt(0.5)
    assert np.allclose(prototypes.detach().numpy(), [[0.6, 0.8], [0.0, -1.0], [half, half]], atol=1e-6)
    config = SigmaConfig(**TINY, num_prototypes=16, decoder_depth=1)
    method = Sigma(config)
    assert torch.allclose(method.prototypes.norm(dim=1), torch.ones(16), atol=1e-6)
    with torch.no_grad():
        method.prototypes.mul_(torch.linspace(0.5, 3.0, 16)[:, None])
    method.pretrain_step(tiny_batch(method.clip_spec(), 2, config.in_chans), TrainState.at(0, 1, 1))
    assert torch.allclose(method.prototypes.norm(dim=1), torch.ones(16), atol=1e-6)


def test_targets_are_argmax_of_balanced_sinkhorn_assignments() -> None:
    _, projection, prototypes = features_pair()
    pixels = prototype_scores(projection, prototypes)
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


def test_loss_is_the_sum_of_the_two_swapped_terms() -> None:
    prediction, projection, prototypes = features_pair(seed=1)
    tau = 0.1
    out = swapped_cross_entropy(prediction, projection, prototypes, tau=tau, eps=0.05, iters=10)
    s_pred = np_cosines(prediction.numpy(), prototypes.numpy())
    s_pix = np_cosines(projection.numpy(), prototypes.numpy())
    pixel_targets = swav_sinkhorn(s_pix, 0.05, 10).argmax(axis=1)
    prediction_targets = swav_sinkhorn(s_pred, 0.05, 10).argmax(axis=1)
    to_pixels = hand_cross_entropy(s_pred, pixel_targets, tau)
    to_prediction = hand_cross_entropy(s_pix, prediction_targets, tau)
    assert math.isclose(float(out.prediction_to_pixels), to_pixels, rel_tol=1e-6)
    assert math.isclose(float(out.pixels_to_prediction), to_prediction, rel_tol=1e-6)
    assert math.isclose(float(out.loss), to_pixels + to_prediction, rel_tol=1e-6)


def test_decoder_branch_sends_no_gradient_to_the_prototypes() -> None:
    prediction, projection, unit = features_pair(seed=2)
    prediction.requires_grad_()
    projection.requires_grad_()
    prototypes = unit.clone().requires_grad_()
    out = swapped_cross_entropy(prediction, projection, prototypes, tau=0.1, eps=0.05, iters=10)
    out.prediction_to_pixels.backward(retain_graph=True)
    assert prototypes.grad is None and projection.grad is None
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    out.pixels_to_prediction.backward()
    assert prototypes.grad is not None and projection.grad is not None
    # The pixel term's prototype gradient, by hand: d CE(s/τ, y)/dP = Σ_n (softmax(s_n/τ) − onehot(y_n))ᵀ x̂_n / (τN).
    x_hat = projection.detach().numpy() / np.linalg.norm(projection.detach().numpy(), axis=1, keepdims=True)
    logits = x_hat @ unit.numpy().T / 0.1
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    targets = swav_sinkhorn(np_cosines(prediction.detach().numpy(), unit.numpy()), 0.05, 10).argmax(axis=1)
    probs[np.arange(len(targets)), targets] -= 1.0
    expected = probs.T @ x_hat / (0.1 * len(targets))
    assert np.allclose(prototypes.grad.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_sigma_step_trains_prototypes_from_the_pixel_branch_only() -> None:
    config = SigmaConfig(**TINY, num_prototypes=32, decoder_depth=1)
    torch.manual_seed(0)
    method = Sigma(config)
    batch = tiny_batch(method.clip_spec(), 2, config.in_chans)
    torch.manual_seed(1)
    out = method.pretrain_step(batch, TrainState.at(0, 1, 1))
    out.loss.backward()
    for module in (method.projector, method.decoder, method.encoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert method.prototypes.grad is not None and method.prototypes.grad.abs().sum() > 0
    terms = out.terms["ce_prediction_to_pixels"] + out.terms["ce_pixels_to_prediction"]
    assert math.isclose(float(out.loss.detach()), terms, rel_tol=1e-6)
    # Backward of the decoder-side term alone reaches the decoder but not the prototypes nor the projector.
    method.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    mask = method.draw_mask(batch)
    prediction = method.predict_masked(batch.clips, mask).flatten(0, 1)
    projected = method.projector(gather_tokens(method.pixel_patches(batch.clips), mask, keep=True).flatten(0, 1))
    swapped_cross_entropy(prediction, projected, method.prototypes, 0.1, 0.05, 10).prediction_to_pixels.backward()
    assert method.prototypes.grad is None
    assert all(p.grad is None for p in method.projector.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.decoder.parameters())


def test_official_defaults_and_projector_shape() -> None:
    config = SigmaConfig(**TINY, decoder_depth=1)
    assert (config.num_prototypes, config.projection_hidden, config.projection_dim) == (3000, (1024, 1024, 512), 256)
    method = Sigma(config)
    linears = [m for m in method.projector if isinstance(m, torch.nn.Linear)]
    pixels = config.tubelet * config.patch * config.patch * config.in_chans
    assert [(m.in_features, m.out_features) for m in linears] == [(pixels, 1024), (1024, 1024), (1024, 512), (512, 256)]
    assert sum(isinstance(m, torch.nn.GELU) for m in method.projector) == 3
    assert method.prototypes.shape == (3000, 256) and method.decoder.head.out_features == 256


def test_invalid_config_names_the_field() -> None:
    for field, value in (("num_prototypes", 0), ("temperature", 0.0), ("sinkhorn_eps", -1.0)):
        try:
            Sigma(SigmaConfig(**TINY, **{field: value}))
        except ValueError as exc:
            assert field in str(exc)
        else:
            raise AssertionError(f"{field}={value} was accepted")
