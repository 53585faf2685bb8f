"""DISCOVER's quick profile: the plugin's own overrides reach the run config between the harness profile and
``--set``, the paper profile keeps the paper's values, and the cost levers they set (SCD targets from a subset of
each tubelet's frames, image self-distillation on fewer frames) do what they say."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from echobench.api import TrainState
from echobench.runner import resolve_pretraining
from echobench.validate import TINY as VALIDATE_TINY
from echobench.validate import tiny_batch
from echobench_plugins.discover import Discover, DiscoverConfig

SMALL = {**VALIDATE_TINY, "head_out_dim": 32, "head_hidden_dim": 32, "head_bottleneck_dim": 16, "scd_prototypes": 20}
# Cheap geometry for resolving the paper profile: resolve_pretraining builds the method once to check its config.
TINY_SETS = [f"method.{key}={value}" for key, value in VALIDATE_TINY.items()]
QUICK_DISCOVER = {
    "video_views": 1,
    "image_views": 1,
    "image_frames": 1,
    "scd_frames_per_tubelet": 1,
    "scd_prototypes": 500,
    "sinkhorn_iters": 3,
    "decoder_depth": 2,
    "freeze_last_layer_epochs": 0,
}
HARNESS_QUICK = {"model": "vit_tiny", "frames": 16, "stride": 4, "size": 64, "patch": 8, "tubelet": 4}


def fields(config: DiscoverConfig, names: object) -> dict[str, object]:
    return {name: getattr(config, name) for name in names}  # type: ignore[attr-defined]


def test_quick_profile_applies_the_plugin_overrides_after_the_harness_profile() -> None:
    _, config, pretrain, _, _ = resolve_pretraining("discover", [], "quick")
    assert fields(config, QUICK_DISCOVER) == QUICK_DISCOVER
    assert fields(config, HARNESS_QUICK) == HARNESS_QUICK
    assert (pretrain.batch_size, pretrain.lr) == (8, 1e-3)


def test_set_wins_over_the_plugin_quick_overrides() -> None:
    sets = ["method.video_views=3", "method.image_frames=null", "method.sinkhorn_iters=10"]
    _, config, _, _, _ = resolve_pretraining("discover", sets, "quick")
    assert (config.video_views, config.image_frames, config.sinkhorn_iters) == (3, None, 10)
    assert (config.image_views, config.scd_prototypes, config.decoder_depth) == (1, 500, 2)


def test_paper_profile_keeps_the_paper_values() -> None:
    _, config, _, _, _ = resolve_pretraining("discover", TINY_SETS, "paper")
    paper = {
        "video_views": 4,
        "image_views": 4,
        "image_frames": None,
        "scd_frames_per_tubelet": None,
        "scd_prototypes": 3000,
        "sinkhorn_iters": 10,
        "decoder_depth": 4,
        "freeze_last_layer_epochs": 1,
    }
    assert fields(config, paper) == paper
    assert dataclasses.replace(config, **VALIDATE_TINY) == dataclasses.replace(DiscoverConfig(), **VALIDATE_TINY)


@pytest.mark.parametrize("per_tubelet", [1, 2])
def test_image_teacher_encodes_the_chosen_frames_of_every_tubelet(per_tubelet: int) -> None:
    torch.manual_seed(0)
    method = Discover(DiscoverConfig(**{**SMALL, "frames": 8, "tubelet": 4, "scd_frames_per_tubelet": per_tubelet}))
    batch = tiny_batch(method.clip_spec(), 2, 1)
    seen: list[torch.Tensor] = []
    original = method.image_teacher.encoder.encode_frames
    method.image_teacher.encoder.encode_frames = lambda frames: seen.append(frames) or original(frames)  # type: ignore[method-assign]
    method.pretrain_step(batch, TrainState.at(0, 5, 10))
    encoded = seen[0].reshape(2, 2, per_tubelet, *seen[0].shape[1:])  # (clip, tubelet, frame in tubelet, C, H, W)
    clips = batch.clips
    for clip in range(2):
        for tubelet in range(2):
            own = [clips[clip, :, 4 * tubelet + f] for f in range(4)]
            matches = [next(f for f in range(4) if torch.equal(frame, own[f])) for frame in encoded[clip, tubelet]]
            assert len(set(matches)) == per_tubelet  # distinct frames, all inside this tubelet


def test_image_frames_beyond_the_encoded_frames_and_bad_per_tubelet_name_the_field() -> None:
    with pytest.raises(ValueError, match="method.scd_frames_per_tubelet must be in"):
        DiscoverConfig(**{**SMALL, "scd_frames_per_tubelet": 3})
    # 4 frames in tubelets of 2, one frame each: the image teacher encodes 2 frames per clip.
    with pytest.raises(ValueError, match=r"method.image_frames must be in \[1, 2\]"):
        DiscoverConfig(**{**SMALL, "scd_frames_per_tubelet": 1, "image_frames": 3})
