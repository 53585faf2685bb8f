"""Temporal MAE (paper 000) and its losses: Eq. 2, Eqs. 3–7, frame-wise masks, oracle clips, config errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from echobench.data.decode_cache import DecodeCache
from echobench.data.loader import ClipDataset, EvalClipDataset, step_batches
from echobench.data.synthecho import SynthEchoDataset
from echobench.models.masking import framewise_random_mask, tube_mask
from echobench.runner import resolve, resolved_eval_spec
from echobench.validate import tiny_batch
from echobench_plugins.temporal_mae import TemporalMAE, TemporalMAEConfig
from echobench_plugins.temporal_mae.losses import reconstruction_loss, temporal_contrastive_loss
from tests.method_runs import run_fails, run_knn_and_linear
from tests.videofolder_fixture import write_videofolder_fixture

TINY_CONFIG = {"model": "vit_tiny", "frames": 4, "size": 32, "patch": 8, "tubelet": 1}


def test_reconstruction_loss_sums_pixels_and_averages_masked_patches() -> None:
    pred = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]], [[0.0, 1.0], [2.0, 2.0], [5.0, 5.0]]])
    target = torch.tensor([[[0.0, 0.0], [9.0, 9.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, False, True], [False, True, False]])
    # Masked patches: (1,2)-(0,0) → 1 + 4 = 5; (3,1)-(1,1) → 4 + 0 = 4; (2,2)-(0,1) → 4 + 1 = 5.
    assert reconstruction_loss(pred, target, mask).item() == pytest.approx((5 + 4 + 5) / 3)


def _contrastive_by_hand(feats: np.ndarray, tau_p: float, tau_m: float) -> float:
    per_clip = []
    for clip in feats:
        frames = len(clip)
        total, pairs = 0.0, 0
        for t in range(frames):
            for delta in range(1, frames - t):
                a, b = clip[t], clip[t + delta]
                d = 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
                total += d**2 if delta <= tau_p else max(0.0, tau_m - d) ** 2
                pairs += 1
        assert pairs == sum(frames - t for t in range(1, frames + 1))  # Eq. 7's C
        per_clip.append(total / pairs)
    return float(np.mean(per_clip))


def test_contrastive_loss_matches_eqs_3_to_7_on_hand_made_frames() -> None:
    feats = np.random.default_rng(0).normal(size=(3, 5, 4))
    for tau_p, tau_m in itertools.product((0, 1, 2, 4), (0.1, 0.5, 1.5)):
        got = temporal_contrastive_loss(torch.from_numpy(feats), tau_p, tau_m).item()
        assert got == pytest.approx(_contrastive_by_hand(feats, tau_p, tau_m), rel=1e-10), (tau_p, tau_m)


def test_contrastive_boundaries_delta_equal_tau_p_is_positive_and_margin_is_zero_beyond_tau_m() -> None:
    # Three frames at angles 0°, 90°, 180°: d(0,1) = d(1,2) = 1, d(0,2) = 2; C = 3.
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    # τ_p = 1: the Δ = 1 pairs are positives (d² = 1 each), the Δ = 2 pair a negative with margin 0.5 < d: 0.
    assert temporal_contrastive_loss(feats, 1, 0.5).item() == pytest.approx(2 / 3)
    # τ_p = 2: Δ = 2 is now positive too (boundary inclusive): (1 + 1 + 4) / 3.
    assert temporal_contrastive_loss(feats, 2, 0.5).item() == pytest.approx(2.0)
    # τ_p = 0: every pair is a negative; margin 1.5 → (0.25 + 0.25 + 0) / 3.
    assert temporal_contrastive_loss(feats, 0, 1.5).item() == pytest.approx(0.5 / 3)


def test_framewise_masks_differ_across_frames_while_tube_masks_do_not() -> None:
    grid = (6, 4, 4)
    framewise = framewise_random_mask(8, grid, 0.75, torch.Generator().manual_seed(0)).reshape(8, 6, 16)
    tube = tube_mask(8, grid, 0.75, torch.Generator().manual_seed(0)).reshape(8, 6, 16)
    assert (framewise.sum(dim=2) == 12).all() and (tube.sum(dim=2) == 12).all()
    assert all(len({tuple(f.tolist()) for f in clip}) > 1 for clip in framewise)
    assert (tube == tube[:, :1]).all()


def test_loss_is_reconstruction_plus_lambda_contrast_and_base_has_no_contrast() -> None:
    spec_config = TemporalMAEConfig(**TINY_CONFIG, contrast_weight=0.3)
    torch.manual_seed(0)
    method = TemporalMAE(spec_config)
    batch = tiny_batch(method.clip_spec(), 2, 1, method=method)
    out = method.pretrain_step(batch, None)  # type: ignore[arg-type]
    assert out.loss.item() == pytest.approx(out.terms["rec"] + 0.3 * out.terms["contrast"], rel=1e-5)
    base = TemporalMAE(TemporalMAEConfig(**TINY_CONFIG, config="base"))
    out = base.pretrain_step(batch, None)  # type: ignore[arg-type]
    assert set(out.terms) == {"rec"} and out.loss.item() == pytest.approx(out.terms["rec"])


def test_downstream_feature_is_the_cls_token() -> None:
    method = TemporalMAE(TemporalMAEConfig(**TINY_CONFIG)).eval()
    clips = tiny_batch(method.eval_clip_spec(), 2, 1).clips
    with torch.no_grad():
        assert torch.equal(method.encode(clips).pooled, method.encoder(clips)[:, 0])
    assert method.encoder.pos_spatial is not None and method.encoder.pos_temporal is not None


def test_oracle_clips_contain_ed_and_es_in_pretraining_and_evaluation(synth_root: Path) -> None:
    dataset = SynthEchoDataset(synth_root)
    cache = DecodeCache.build(dataset, 32)
    method = TemporalMAE(TemporalMAEConfig(**TINY_CONFIG, config="contrastive_oracle"))
    table = dataset.split_table("train")
    batch = next(step_batches(ClipDataset(cache, table, method.clip_spec(), 0.2, 0.2, seed=0), 4, 0, 0, 0))
    assert batch.ed_es is not None
    for indices, (ed, es) in zip(batch.frame_indices[:, 0], batch.ed_es, strict=True):
        assert indices[0] == ed and indices[-1] == es
    sets = [f"method.{k}={v}" for k, v in TINY_CONFIG.items()] + ["method.config=oracle"]
    resolved = resolve("temporal_mae", "knn", data_root=str(synth_root), sets=sets)
    spec = resolved_eval_spec(resolved)
    assert spec.start == "ed_es" and resolved.eval_clips["start"] == "ed_es"
    test = dataset.split_table("test")
    clips = EvalClipDataset(cache, test, spec, 0.2, 0.2)
    np.testing.assert_array_equal(clips.frame_indices[:, 0], test["ed_frame"].to_numpy())
    np.testing.assert_array_equal(clips.frame_indices[:, -1], test["es_frame"].to_numpy())
    plain = resolve("temporal_mae", "knn", data_root=str(synth_root), sets=sets[:-1])
    assert resolved_eval_spec(plain).start == "evenly"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("method.mask_ratio=1.0", "method.mask_ratio"),
        ("method.mask_ratio=0", "method.mask_ratio"),
        ("method.tau_p=4", "method.tau_p"),
        ("method.tau_m=0", "method.tau_m"),
        ("method.tubelet=8", "method.tubelet"),
        ("method.size=36", "method.patch"),
    ],
)
def test_bad_configs_are_one_line_errors_naming_the_field(monkeypatch, capsys, setting: str, named: str) -> None:
    sets = [arg for k, v in TINY_CONFIG.items() for arg in ("--set", f"method.{k}={v}")]
    err = run_fails(monkeypatch, capsys, ["pretrain", "--method", "temporal_mae", *sets, "--set", setting])
    assert named in err


def test_oracle_on_a_dataset_without_ed_es_names_the_dataset(monkeypatch, capsys, tmp_path: Path) -> None:
    root = write_videofolder_fixture(tmp_path / "vf")
    sets = [arg for k, v in TINY_CONFIG.items() for arg in ("--set", f"method.{k}={v}")]
    common = ["--dataset", "videofolder", "--data-root", str(root), "--method", "temporal_mae", *sets]
    for argv in (["run", "--protocol", "knn", "--task", "ef"], ["pretrain"]):
        err = run_fails(monkeypatch, capsys, [*argv, *common, "--set", "method.config=oracle"])
        assert "dataset videofolder has no ED/ES frames" in err


def test_runs_knn_and_linear_on_synthecho(monkeypatch, capsys, synth_root: Path) -> None:
    runs = run_knn_and_linear(monkeypatch, capsys, synth_root, "temporal_mae", ["--set", "method.tubelet=1"])
    for protocol, summary in runs.items():
        assert summary["metrics"], protocol
    assert runs["knn"]["checkpoint_hash"] == runs["linear"]["checkpoint_hash"]
