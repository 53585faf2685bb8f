"""Token-grid heads, fine-tuning pieces, the training loop's validation selection, seeds and clip settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from echobench import checkpoint as ckpt
from echobench.api import LossOutput
from echobench.config import PretrainConfig
from echobench.data.tasks import get_task
from echobench.errors import UserError
from echobench.models.vit import VideoViT
from echobench.protocols.base import FeatureSet, ProtocolResult
from echobench.protocols.finetune import layer_lr_scale, set_trainable
from echobench.protocols.repeat import mean_sd, repeat_over_seeds
from echobench.protocols.scoring import video_outputs
from echobench.protocols.token_heads import TokenHeadConfig, run_token_head, token_frame_times
from echobench.runner import clips_setting
from echobench.train import TrainLoop

EF = get_task("ef")
BINARY = get_task("ef_binary")
GRID = (2, 2, 2)
DIM = 8


def _token_split(rng: np.random.Generator, videos: int, clips: int = 2) -> FeatureSet:
    """Tokens that mix two fixed patterns at an angle set by the target: learnable by any token head, and the
    angle survives the layer norm of the attentive probe (a scaled single pattern would not)."""
    targets = rng.uniform(20, 80, size=videos)
    clip_video = np.repeat(np.arange(videos), clips)
    first, second = np.linspace(-1, 1, DIM), np.cos(np.arange(DIM) * 2.0)
    angle = ((targets[clip_video] - 20) / 60 * np.pi / 2)[:, None, None, None, None]
    noise = rng.normal(0, 0.05, size=(len(clip_video), *GRID, DIM))
    tokens = noise + np.cos(angle) * first + np.sin(angle) * second
    frames = np.tile(np.arange(4), (len(clip_video), 1))
    return FeatureSet(
        features=tokens.mean(axis=(1, 2, 3)).astype(np.float32),
        clip_video=clip_video,
        video_ids=[f"v{i}" for i in range(videos)],
        targets=targets,
        tokens=tokens.astype(np.float16),
        frame_indices=frames,
    )


@pytest.fixture(scope="module")
def token_splits():
    rng = np.random.default_rng(0)
    return _token_split(rng, 60), _token_split(rng, 20), _token_split(rng, 20)


@pytest.mark.parametrize("head", ["attentive", "maxpool"])
def test_token_heads_learn_a_token_encoded_target(token_splits, head) -> None:
    train, val, test = token_splits
    config = TokenHeadConfig(head=head, lrs=(1e-3, 1e-2), epochs=40, batch_size=16, patience=10, ci_resamples=100)
    result = run_token_head(train, val, test, task=EF, config=config, grid=GRID)
    spread = np.abs(test.targets - test.targets.mean()).mean()
    assert result.metrics["mae"] < 0.35 * spread
    assert result.chosen["lr"] in (1e-3, 1e-2) and 1 <= result.chosen["epoch"] <= 40
    low, high = result.ci["mae"]
    assert low <= result.metrics["mae"] <= high


def test_token_head_selection_never_reads_test_labels(token_splits) -> None:
    train, val, test = token_splits
    config = TokenHeadConfig(head="maxpool", lrs=(1e-3, 3e-3), epochs=8, batch_size=16, ci_resamples=0)
    clean = run_token_head(train, val, test, task=EF, config=config, grid=GRID)
    poisoned = FeatureSet(**{**test.__dict__, "targets": test.targets[::-1].copy() + 40})
    dirty = run_token_head(train, val, poisoned, task=EF, config=config, grid=GRID)
    assert clean.chosen == dirty.chosen
    assert clean.val_metrics == dirty.val_metrics
    np.testing.assert_array_equal(clean.predictions["prediction"], dirty.predictions["prediction"])
    assert clean.metrics != dirty.metrics


def test_stff_head_uses_real_frame_times(token_splits) -> None:
    train, val, test = token_splits
    config = TokenHeadConfig(head="stff", lrs=(1e-3,), epochs=2, batch_size=16, ci_resamples=0)
    result = run_token_head(train, val, test, task=EF, config=config, grid=GRID)
    assert np.isfinite(result.metrics["mae"])


def test_token_frame_times_average_each_tubelet() -> None:
    frames = np.array([[0, 4, 8, 12], [3, 5, 7, 9]])
    np.testing.assert_array_equal(token_frame_times(frames, 2), [[2.0, 10.0], [4.0, 8.0]])
    with pytest.raises(ValueError):
        token_frame_times(frames, 3)


def test_any_and_mean_aggregation_on_a_hand_made_example() -> None:
    # Video 0: clips with P(positive) 0.9, 0.2, 0.1; video 1: 0.4, 0.45.
    probs = np.array([0.9, 0.2, 0.1, 0.4, 0.45])
    logits = torch.tensor(np.log(np.stack([1 - probs, probs], axis=1)))[None]
    clip_video = np.array([0, 0, 0, 1, 1])
    pred_mean, score_mean = video_outputs(logits, clip_video, 2, BINARY, "mean")
    pred_any, score_any = video_outputs(logits, clip_video, 2, BINARY, "any")
    np.testing.assert_allclose(score_mean[0], [0.4, 0.425])
    np.testing.assert_array_equal(pred_mean[0], [0, 0])
    np.testing.assert_allclose(score_any[0], [0.9, 0.45])
    np.testing.assert_array_equal(pred_any[0], [1, 0])


def test_layer_wise_lr_decay_scales() -> None:
    encoder = VideoViT(embed_dim=16, depth=2, num_heads=2, img_size=16, frames=2, patch=8, tubelet=2, cls_token=True)
    scale = layer_lr_scale(encoder, decay=0.5, head_scale=10.0)
    assert scale("head.module.weight") == 10.0
    assert scale("encoder.norm.weight") == 1.0
    assert scale("encoder.blocks.1.attn.qkv.weight") == 0.5
    assert scale("encoder.blocks.0.mlp.fc1.weight") == 0.25
    assert scale("encoder.patch_embed.weight") == 0.125
    assert scale("encoder.cls_token") == 0.125
    assert layer_lr_scale(encoder, 1.0, 3.0)("encoder.patch_embed.weight") == 1.0


def test_partial_unfreezing_trains_only_the_last_blocks_and_norm() -> None:
    encoder = VideoViT(embed_dim=16, depth=4, num_heads=2, img_size=16, frames=2, patch=8, tubelet=2, cls_token=True)
    set_trainable(encoder, 2)
    trainable = {
        n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
        for n, p in encoder.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"blocks.2", "blocks.3", "norm"}
    set_trainable(encoder, -1)
    assert all(p.requires_grad for p in encoder.parameters())
    set_trainable(encoder, 0)
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(UserError, match="cannot unfreeze 5 blocks"):
        set_trainable(encoder, 5)


def test_train_loop_keeps_the_weights_of_the_best_validation_step(tmp_path: Path) -> None:
    model = nn.Linear(1, 1, bias=False)
    scores = iter([0.1, 0.7, 0.3, 0.7])  # validated at steps 2, 4, 6, 8; ties keep the earlier step
    weights_at: dict[int, float] = {}

    def step(batch: torch.Tensor, state: object) -> LossOutput:
        return LossOutput(loss=(model(batch) - 3.0).square().mean())

    def validate() -> float:
        weights_at[len(weights_at) * 2 + 2] = model.weight.item()
        return next(scores)

    def meta(step_reached: int, complete: bool) -> ckpt.CheckpointMeta:
        return ckpt.CheckpointMeta("toy", "0", {}, step_reached, 8, complete, {})

    config = PretrainConfig(steps=8, batch_size=1, lr=0.1, lr_scaling="none", warmup_fraction=0.0, seed=0)
    loop = TrainLoop(model, step, config, tmp_path / "ck", meta, validate=validate, validate_every=2)
    loop.run(lambda start: iter([torch.ones(4, 1)] * 8))
    assert loop.best_step == 4 and loop.best_score == 0.7
    assert [s for s, _ in loop.history] == [2, 4, 6, 8]
    assert model.weight.item() == pytest.approx(weights_at[4])
    assert model.weight.item() != pytest.approx(weights_at[8])


def test_repeat_over_seeds_means_and_lists() -> None:
    def run(seed: int) -> ProtocolResult:
        import pandas as pd

        return ProtocolResult({"mae": float(seed)}, {"mae": (0.0, 1.0)}, {"lr": seed * 0.1}, {}, pd.DataFrame())

    result = repeat_over_seeds(run, [1, 2, 6])
    assert result.metrics["mae"] == 3.0
    assert result.per_seed["mae"] == [1.0, 2.0, 6.0]
    assert result.chosen["lr"] == pytest.approx(0.1) and result.chosen["lr@seed=6"] == pytest.approx(0.6)
    assert list(result.summary["seed"]) == [1, 2, 6]
    mean, sd = mean_sd([1.0, 2.0, 6.0, float("nan")])
    assert mean == 3.0 and sd == pytest.approx(np.std([1, 2, 6], ddof=1))


def test_clips_setting() -> None:
    assert clips_setting("all") == {"start": "all"}
    assert clips_setting(4) == {"start": "evenly", "num_clips": 4}
    for bad in (0, "some", 1.5, True):
        with pytest.raises(UserError, match="protocol.clips"):
            clips_setting(bad)


def test_select_videos_cuts_table_order_out_of_several_encoded_splits() -> None:
    import pandas as pd

    from echobench.context import select_videos
    from echobench.embed import EncodedSplit

    # Clip feature = 10 * video row + clip rank; clips of a video are not contiguous in the encoded arrays.
    train = EncodedSplit(
        features=np.array([[0.0], [10.0], [1.0], [20.0], [11.0]], dtype=np.float32),
        clip_video=np.array([0, 1, 0, 2, 1]),
        video_ids=["a", "b", "c"],
        frame_indices=np.arange(5)[:, None],
    )
    val = EncodedSplit(features=np.array([[100.0]], dtype=np.float32), clip_video=np.array([0]), video_ids=["d"])
    table = pd.DataFrame({"video_id": ["c", "d", "a"], "split": ["train", "val", "train"]})
    fs = select_videos({"train": train, "val": val}, table, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(fs.features[:, 0], [20.0, 100.0, 0.0, 1.0])
    np.testing.assert_array_equal(fs.clip_video, [0, 1, 2, 2])
    assert fs.video_ids == ["c", "d", "a"] and fs.frame_indices is None
    only_train = select_videos({"train": train}, table.iloc[[2, 0]], np.array([3.0, 1.0]))
    np.testing.assert_array_equal(only_train.frame_indices[:, 0], [0, 2, 3])
