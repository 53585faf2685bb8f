"""EchoCardMAE (paper 001): alignment loss, blurred targets vs OpenCV, key-area masks from raw sector frames, two
clips with distinct starts, loss weighting, config errors, CLI runs."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from echobench.api import SampleMeta
from echobench.data.decode_cache import DecodeCache
from echobench.data.loader import ClipDataset, step_batches
from echobench.data.synthecho import SynthEchoDataset
from echobench.validate import tiny_batch
from echobench_plugins.echocardmae import EchoCardMAE, EchoCardMAEConfig
from echobench_plugins.echocardmae.losses import alignment_loss, blur_target, gaussian_sigma
from echobench_plugins.echocardmae.method import key_area_mask, roi_tokens
from tests.method_runs import run_fails, run_knn_and_linear
from tests.sector_video import sector_clip

TINY_CONFIG = {"model": "vit_tiny", "frames": 4, "stride": 1, "size": 32, "patch": 8, "tubelet": 2}


def _infonce_by_hand(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    a = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    b = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    sim = a @ b.T / tau
    n = len(sim)
    rows = [-sim[i, i] + math.log(sum(math.exp(sim[i, j]) for j in range(n))) for i in range(n)]
    cols = [-sim[i, i] + math.log(sum(math.exp(sim[j, i]) for j in range(n))) for i in range(n)]
    return 0.5 * (np.mean(rows) + np.mean(cols))


def test_infonce_equals_cross_entropy_on_the_similarity_matrix() -> None:
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    got = alignment_loss(torch.from_numpy(z1), torch.from_numpy(z2), tau=0.1).item()
    assert got == pytest.approx(_infonce_by_hand(z1, z2, 0.1), rel=1e-10)
    # Scaling either feature set leaves the L2-normalised loss unchanged.
    scaled = alignment_loss(torch.from_numpy(3 * z1), torch.from_numpy(z2), tau=0.1).item()
    assert scaled == pytest.approx(got, rel=1e-10)


def test_paper_eq2_is_one_way_unnormalised_without_the_positive_in_the_denominator() -> None:
    z1 = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    z2 = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    tau = 0.5
    sim = z1 @ z2.T / tau
    expected = np.mean(
        [-math.log(math.exp(sim[i, i]) / sum(math.exp(sim[i, j]) for j in range(3) if j != i)) for i in range(3)]
    )
    got = alignment_loss(torch.from_numpy(z1), torch.from_numpy(z2), tau=tau, variant="paper_eq2").item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_median_blur_equals_opencv_per_frame_and_other_blurs_match_opencv() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 1, 3, 9, 12), dtype=np.uint8)
    per_frame = [(b, t) for b in range(2) for t in range(3)]
    for k in (3, 5):
        median = blur_target(torch.from_numpy(frames), "median", k).numpy()
        for b, t in per_frame:
            np.testing.assert_array_equal(median[b, 0, t], cv2.medianBlur(frames[b, 0, t], k))
        floats = frames.astype(np.float32)
        mean = blur_target(torch.from_numpy(floats), "mean", k).numpy()
        gauss = blur_target(torch.from_numpy(floats), "gaussian", k).numpy()
        sigma = gaussian_sigma(k)
        for b, t in per_frame:
            np.testing.assert_allclose(mean[b, 0, t], cv2.blur(floats[b, 0, t], (k, k)), atol=1e-3)
            reference = cv2.GaussianBlur(floats[b, 0, t], (k, k), sigmaX=sigma, sigmaY=sigma)
            np.testing.assert_allclose(gauss[b, 0, t], reference, atol=1e-3)
    # On normalised clips the median blur is the normalised median blur of the pixels.
    normalised = (torch.from_numpy(frames).float() / 255 - 0.3) / 0.2
    expected = (blur_target(torch.from_numpy(frames)).float() / 255 - 0.3) / 0.2
    torch.testing.assert_close(blur_target(normalised), expected)


def _sector_frames(views: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([sector_clip(4, 32, 32, rng) for _ in range(views)]))


def test_sector_tokens_come_from_the_raw_frames() -> None:
    method = EchoCardMAE(EchoCardMAEConfig(**TINY_CONFIG))
    frames = _sector_frames(2, 0)
    meta = SampleMeta("v", 50.0, (-1, -1), 0)
    tokens = method.prepare_sample(frames, np.zeros((2, 4), np.int64), meta)["key_area"]
    sector = (frames > 0).any(dim=1).numpy()
    for view in range(2):
        for index in range(16):
            row, col = divmod(index, 4)
            fraction = sector[view, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8].mean()
            assert bool(tokens[view, index]) == (fraction >= 0.5)
    assert 0 < int(tokens.sum()) < 32


def test_key_area_masks_never_touch_background_and_mask_the_ratio_in_every_time_slice() -> None:
    grid = (3, 4, 4)
    method = EchoCardMAE(EchoCardMAEConfig(**TINY_CONFIG))
    meta = SampleMeta("v", 50.0, (-1, -1), 0)
    candidates = torch.cat(
        [method.prepare_sample(_sector_frames(1, s), np.zeros((1, 4), np.int64), meta)["key_area"] for s in range(4)]
    )
    candidates[0, :] = True  # one sample with a larger sector: its surplus tokens become background
    masks = key_area_mask(candidates, grid, 0.75, torch.Generator().manual_seed(0))
    per_token = candidates[:, None, :].expand(-1, 3, -1)
    masked = masks.masked.reshape(4, 3, 16)
    visible = masks.visible.reshape(4, 3, 16)
    assert not (masked & ~per_token).any() and not (visible & ~per_token).any()
    smallest = int(candidates.sum(dim=1).min())
    # EchoCardMAE's code (utils.py random_mask_in_roi): num_unmask = int(num_token * (1 - mask_ratio)).
    assert (visible.sum(dim=2) == int(smallest * (1 - 0.75))).all()
    assert (masked.sum(dim=2) == smallest - int(smallest * (1 - 0.75))).all()
    assert any(not torch.equal(masked[b, 0], masked[b, 1]) for b in range(4))  # redrawn for each t'


def test_key_area_counts_on_the_codes_roi_size() -> None:
    # The code's fixed ROI has 158 of 196 tokens: it keeps int(158·0.25) = 39 visible and masks 119 per slice;
    # VideoMAE's rule would mask int(0.75·158) = 118.
    candidates = torch.zeros(2, 196, dtype=torch.bool)
    candidates[:, :158] = True
    assert EchoCardMAEConfig().mask_rounding == "visible"
    for rounding, masked in (("visible", 119), ("masked", 118)):
        masks = key_area_mask(candidates, (2, 14, 14), 0.75, torch.Generator().manual_seed(0), rounding)  # type: ignore[arg-type]
        assert (masks.masked.reshape(2, 2, 196).sum(dim=2) == masked).all()
        assert (masks.visible.reshape(2, 2, 196).sum(dim=2) == 158 - masked).all()


def test_fixed_roi_candidates_are_the_tokens_centred_inside_it() -> None:
    tokens = roi_tokens(32, 8, (0.0, 0.25, 0.5, 1.0)).reshape(4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, 1:] = True
    assert torch.equal(tokens, expected)


def test_the_two_clips_have_distinct_starts(synth_root: Path) -> None:
    dataset = SynthEchoDataset(synth_root)
    cache = DecodeCache.build(dataset, 32)
    method = EchoCardMAE(EchoCardMAEConfig(**TINY_CONFIG))
    spec = method.clip_spec()
    clips = ClipDataset(cache, dataset.split_table("train"), spec, 0.2, 0.2, seed=0, prepare=method.prepare_sample)
    iterator = step_batches(clips, 8, 0, 0, 0)
    for _ in range(3):
        batch = next(iterator)
        assert len(batch.views) == 2 and batch.extras["key_area"].shape == (8, 2, 16)
        assert (batch.frame_indices[:, 0, 0] != batch.frame_indices[:, 1, 0]).all()


def test_loss_weighting_paper_and_code() -> None:
    torch.manual_seed(0)
    paper = EchoCardMAE(EchoCardMAEConfig(**TINY_CONFIG))
    code = EchoCardMAE(EchoCardMAEConfig(**TINY_CONFIG, loss_weighting="code"))
    code.load_state_dict(paper.state_dict())
    batch = tiny_batch(paper.clip_spec(), 3, 1, method=paper)
    torch.manual_seed(1)
    out = paper.pretrain_step(batch, None)  # type: ignore[arg-type]
    assert out.loss.item() == pytest.approx(out.terms["rec"] + 0.2 * out.terms["align"], rel=1e-5)
    torch.manual_seed(1)
    out_code = code.pretrain_step(batch, None)  # type: ignore[arg-type]
    assert out_code.terms == pytest.approx(out.terms)
    assert out_code.loss.item() == pytest.approx(0.8 * out.terms["rec"] + 0.2 * out.terms["align"], rel=1e-5)


def test_bad_configs_are_one_line_errors(monkeypatch, capsys) -> None:
    sets = [arg for k, v in TINY_CONFIG.items() for arg in ("--set", f"method.{k}={v}")]
    for setting, named in (
        ("method.mask_ratio=0", "method.mask_ratio"),
        ("method.frames=1", "method.tubelet"),
        ("method.size=36", "method.patch"),
        ("method.blur_kernel=4", "method.blur_kernel"),
        ("method.align_tau=0", "method.align_tau"),
    ):
        err = run_fails(monkeypatch, capsys, ["pretrain", "--method", "echocardmae", *sets, "--set", setting])
        assert named in err


def test_runs_knn_and_linear_on_synthecho(monkeypatch, capsys, synth_root: Path) -> None:
    runs = run_knn_and_linear(monkeypatch, capsys, synth_root, "echocardmae")
    assert runs["knn"]["metrics"] and runs["linear"]["metrics"]
