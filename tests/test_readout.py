"""Frozen readouts (``protocol.pool``) on hand-made token grids, and the settings that choose them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from echobench.errors import UserError
from echobench.protocols.readout import grid_mean, motion_map, readout
from echobench.runner import resolve


def _tokens() -> np.ndarray:
    """One clip, T' = 2, H' = 1, W' = 2, D = 2: tokens[0, t, 0, w] for t = 0, 1."""
    grid = np.zeros((1, 2, 1, 2, 2))
    grid[0, :, 0, 0] = [[0.0, 1.0], [2.0, 1.0]]  # location 0: channel SDs 1 and 0
    grid[0, :, 0, 1] = [[3.0, 0.0], [3.0, 4.0]]  # location 1: channel SDs 0 and 2
    return grid


def test_motion_map_is_the_channel_mean_of_each_locations_temporal_sd() -> None:
    np.testing.assert_allclose(motion_map(_tokens()), [[0.5, 1.0]])
    np.testing.assert_allclose(grid_mean(_tokens()), [[8.0 / 4, 6.0 / 4]])
    # No motion, no map: a clip repeating one frame.
    still = np.repeat(_tokens()[:, :1], 3, axis=1)
    np.testing.assert_allclose(motion_map(still), [[0.0, 0.0]])


def test_mean_std_concatenates_unit_mean_and_unit_motion_map() -> None:
    pooled = np.array([[9.0, 9.0]])
    out = readout("mean_std", pooled, _tokens().astype(np.float16))
    mean = np.array([2.0, 1.5]) / np.hypot(2.0, 1.5)
    motion = np.array([0.5, 1.0]) / np.hypot(0.5, 1.0)
    np.testing.assert_allclose(out, [np.r_[mean, motion]], rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(readout("encoder", pooled, None), pooled)
    np.testing.assert_allclose(readout("mean", pooled, _tokens()), [[2.0, 1.5]])
    np.testing.assert_allclose(readout("motion", pooled, _tokens()), [motion], rtol=1e-6)
    with pytest.raises(ValueError, match="token grid"):
        readout("mean", pooled, None)


def test_mean_std_keeps_what_a_time_mean_loses() -> None:
    """Two clips with the same frames in time-mean but different motion: only the motion map tells them apart."""
    still = np.ones((1, 4, 2, 2, 3))
    beating = still.copy()
    beating[0, ::2, 0, 0] += 1.0
    beating[0, 1::2, 0, 0] -= 1.0
    both = np.concatenate([still, beating])
    mean = readout("mean", both[:, :, :, :, :1].mean(axis=-1, keepdims=True), both)
    np.testing.assert_allclose(mean[0], mean[1])
    out = readout("mean_std", mean, both)
    assert not np.allclose(out[0], out[1])
    np.testing.assert_allclose(motion_map(both)[1], [1.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("protocol", ["knn", "linear", "mlp", "clip-variance"])
def test_pool_is_a_checked_protocol_setting(protocol: str) -> None:
    assert resolve("random_init", protocol, sets=["protocol.pool=mean"]).protocol_config.pool == "mean"
    with pytest.raises(UserError, match="protocol.pool must be one of"):
        resolve("random_init", protocol, sets=["protocol.pool=median"])


def test_frame_controls_are_refused_where_the_encoder_trains() -> None:
    resolved = resolve("random_init", "linear", sets=["protocol.shuffle_frames=true"])
    assert resolved.eval_clips["frame_control"] == "shuffle"
    assert resolve("random_init", "knn", sets=["protocol.freeze_frames=true"]).eval_clips["frame_control"] == "freeze"
    assert "frame_control" not in resolve("random_init", "linear").eval_clips
    with pytest.raises(UserError, match="protocol.shuffle_frames: protocol finetune-full trains the encoder"):
        resolve("random_init", "finetune-full", sets=["protocol.shuffle_frames=true"])
    with pytest.raises(UserError, match="protocol.freeze_frames: protocol finetune-partial trains the encoder"):
        resolve("random_init", "finetune-partial", sets=["protocol.freeze_frames=true"])
    with pytest.raises(UserError, match="protocol.shuffle_frames must be true or false"):
        resolve("random_init", "knn", sets=["protocol.shuffle_frames=3"])
    with pytest.raises(UserError, match="exclude each other"):
        resolve("random_init", "knn", sets=["protocol.shuffle_frames=true", "protocol.freeze_frames=true"])


def test_a_frame_control_alters_only_the_test_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    # The readout is fitted (train) and selected (val) on intact clips; only the clips it is scored on change.
    import echobench.context as context_module
    from echobench.api import ClipSpec

    seen: dict[str, str] = {}

    def record(method, checkpoint, dataset, cache, split, spec, norm, *, with_tokens):  # noqa: ANN001, ANN202
        seen[split] = spec.frame_control

    monkeypatch.setattr(context_module, "encode_split", record)
    spec = ClipSpec(frames=4, stride=1, size=16, start="evenly", frame_control="shuffle")
    pretrained = SimpleNamespace(method=None, checkpoint_hash="h")
    ctx = context_module.ProtocolContext(pretrained, None, None, None, None, spec, (0.0, 1.0))  # type: ignore[arg-type]
    for split in ("train", "val", "test"):
        ctx.encode(split)
    assert seen == {"train": "none", "val": "none", "test": "shuffle"}
    assert context_module.CONTROLLED_SPLIT == "test"


def test_mean_std_head_reads_the_same_motion_map_and_trains_where_nothing_moves() -> None:
    import torch

    from echobench.models.heads import MeanStdHead

    head = MeanStdHead(dim=2, outputs=1, locations=2)
    tokens = torch.tensor(np.concatenate([_tokens(), -_tokens()]), dtype=torch.float32, requires_grad=True)
    features: dict[str, torch.Tensor] = {}

    def keep_input(_module: torch.nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        features["x"] = args[0].detach()

    head.norm.register_forward_hook(keep_input)
    head(tokens).sum().backward()
    # Negating a clip flips its mean and keeps its motion map.
    np.testing.assert_allclose(features["x"].numpy(), [[2.0, 1.5, 0.5, 1.0], [-2.0, -1.5, 0.5, 1.0]], atol=1e-3)
    assert torch.isfinite(tokens.grad).all()
    with pytest.raises(ValueError, match="token grid"):
        head(torch.zeros(1, 4, 2))
