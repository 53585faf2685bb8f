"""EchoVisionFM (paper 002): Echo-VideoMAE flips and sampling, tube masks, the finetune-stff spec, CLI runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from echobench import registry
from echobench.api import ClipSpec
from echobench.data.sampling import clip_indices
from echobench.protocols import get_family
from echobench.runner import resolve, resolved_eval_spec
from echobench.validate import tiny_batch
from echobench_plugins.echovisionfm import EchoVisionFM, EchoVisionFMConfig, random_flips
from tests.method_runs import run_fails, run_knn_and_linear

TINY_CONFIG = {"model": "vit_tiny", "frames": 4, "stride": 1, "size": 32, "patch": 8, "tubelet": 2}


def test_paper_defaults() -> None:
    c = EchoVisionFMConfig()
    assert (c.mask_ratio, c.tubelet, c.patch, c.frames, c.stride, c.size) == (0.9, 2, 16, 16, 2, 224)
    assert (c.hflip_p, c.vflip_p, c.sampling) == (0.5, 0.5, "stride")


def test_flips_mirror_whole_clips_with_the_drawn_probabilities() -> None:
    clips = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(1, 1, 2, 6, 8).expand(400, 1, 2, 6, 8)
    flipped = random_flips(clips, 0.5, 0.25, torch.Generator().manual_seed(0))
    draws = torch.rand(400, 2, generator=torch.Generator().manual_seed(0))
    for i in range(400):
        expected = clips[i]
        if draws[i, 0] < 0.5:
            expected = expected.flip(-1)
        if draws[i, 1] < 0.25:
            expected = expected.flip(-2)
        assert torch.equal(flipped[i], expected)
    horizontal = (draws[:, 0] < 0.5).float().mean().item()
    vertical = (draws[:, 1] < 0.25).float().mean().item()
    assert 0.4 < horizontal < 0.6 and 0.17 < vertical < 0.33
    assert torch.equal(random_flips(clips, 0.0, 0.0, torch.Generator().manual_seed(0)), clips)


def test_flips_follow_the_global_rng_the_harness_seeds() -> None:
    torch.manual_seed(0)
    method = EchoVisionFM(EchoVisionFMConfig(**TINY_CONFIG))
    batch = tiny_batch(method.clip_spec(), 4, 1, method=method)
    losses = []
    for _ in range(2):
        torch.manual_seed(7)
        losses.append(method.pretrain_step(batch, None).loss.item())  # type: ignore[arg-type]
    torch.manual_seed(8)
    assert losses[0] == losses[1] != method.pretrain_step(batch, None).loss.item()  # type: ignore[arg-type]


def test_uniform_sampling_spreads_the_clip_over_the_whole_video_in_training_and_evaluation(synth_root: Path) -> None:
    method = EchoVisionFM(EchoVisionFMConfig(**TINY_CONFIG, sampling="uniform"))
    assert method.clip_spec().start == "uniform"
    spec = ClipSpec(frames=16, stride=2, size=32, start="uniform")
    np.testing.assert_array_equal(clip_indices(151, spec)[0], np.arange(16) * 10)
    sets = [f"method.{k}={v}" for k, v in TINY_CONFIG.items()]
    uniform = resolve("echovisionfm", "knn", data_root=str(synth_root), sets=[*sets, "method.sampling=uniform"])
    assert resolved_eval_spec(uniform).start == "uniform"
    assert resolved_eval_spec(resolve("echovisionfm", "knn", data_root=str(synth_root), sets=sets)).start == "evenly"


def test_finetune_stff_is_full_fine_tuning_with_the_stff_head() -> None:
    spec = registry.load_protocol("finetune-stff")
    config = get_family(spec.family).config_from_dict(spec.settings["config"])
    assert spec.family == "finetune" and config.head == "stff" and config.unfreeze == -1


def test_bad_configs_are_one_line_errors(monkeypatch, capsys) -> None:
    sets = [arg for k, v in TINY_CONFIG.items() for arg in ("--set", f"method.{k}={v}")]
    for setting, named in (
        ("method.mask_ratio=1", "method.mask_ratio"),
        ("method.frames=1", "method.tubelet"),
        ("method.size=20", "method.patch"),
        ("method.hflip_p=2", "method.hflip_p"),
    ):
        err = run_fails(monkeypatch, capsys, ["pretrain", "--method", "echovisionfm", *sets, "--set", setting])
        assert named in err


def test_runs_knn_and_linear_on_synthecho(monkeypatch, capsys, synth_root: Path) -> None:
    runs = run_knn_and_linear(monkeypatch, capsys, synth_root, "echovisionfm")
    assert runs["knn"]["metrics"] and runs["linear"]["metrics"]
