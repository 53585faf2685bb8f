"""Frame-based MAE (paper 000's baseline): single-frame encoding, mean over frames, config errors, CLI runs."""

from __future__ import annotations

from pathlib import Path

import torch

from echobench.validate import tiny_batch
from echobench_plugins.frame_mae import FrameMAE, FrameMAEConfig
from tests.method_runs import run_fails, run_knn_and_linear

TINY_CONFIG = {"model": "vit_tiny", "frames": 3, "size": 32, "patch": 8}


def test_video_embedding_is_the_mean_of_independently_encoded_frames() -> None:
    torch.manual_seed(0)
    method = FrameMAE(FrameMAEConfig(**TINY_CONFIG)).eval()
    clips = tiny_batch(method.eval_clip_spec(), 2, 1).clips
    with torch.no_grad():
        embedding = method.encode(clips)
        frames = [method.encoder(clips[:, :, t : t + 1]) for t in range(3)]
    expected = torch.stack([f[:, 0] for f in frames], dim=1).mean(dim=1)
    torch.testing.assert_close(embedding.pooled, expected, rtol=1e-5, atol=1e-5)
    assert embedding.tokens.shape == (2, 3, 4, 4, 192) and method.encoder.grid == (3, 4, 4)
    torch.testing.assert_close(embedding.tokens[:, 1].flatten(1, 2), frames[1][:, 1:], rtol=1e-5, atol=1e-5)
    changed = clips.clone()
    changed[:, :, 2] = 0.0
    with torch.no_grad():
        other = method.encode(changed).tokens
    assert torch.equal(other[:, :2], embedding.tokens[:, :2]) and not torch.equal(other[:, 2], embedding.tokens[:, 2])


def test_pretraining_masks_each_frame_as_its_own_image() -> None:
    torch.manual_seed(0)
    method = FrameMAE(FrameMAEConfig(**TINY_CONFIG))
    assert method.decoder.num_patches == 16 and method.encoder.num_patches == 16
    out = method.pretrain_step(tiny_batch(method.clip_spec(), 2, 1, method=method), None)  # type: ignore[arg-type]
    assert torch.isfinite(out.loss) and set(out.terms) == {"rec"}


def test_bad_mask_ratio_and_patch_are_one_line_errors(monkeypatch, capsys) -> None:
    sets = [arg for k, v in TINY_CONFIG.items() for arg in ("--set", f"method.{k}={v}")]
    for setting, named in (("method.mask_ratio=1.5", "method.mask_ratio"), ("method.patch=5", "method.patch")):
        err = run_fails(monkeypatch, capsys, ["pretrain", "--method", "frame_mae", *sets, "--set", setting])
        assert named in err


def test_runs_knn_and_linear_on_synthecho(monkeypatch, capsys, synth_root: Path) -> None:
    runs = run_knn_and_linear(monkeypatch, capsys, synth_root, "frame_mae")
    assert runs["knn"]["metrics"] and runs["linear"]["metrics"]
