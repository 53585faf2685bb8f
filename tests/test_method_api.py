"""Method API v2: train state and hooks, schedules, the downstream contract, loader extras, time-based clips,
starting weights and the normal-only pretraining filter."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from echobench import checkpoint as ckpt
from echobench import registry
from echobench.api import ClipSpec, TrainState
from echobench.config import PretrainConfig
from echobench.data.decode_cache import DecodeCache
from echobench.data.loader import ClipDataset, step_batches
from echobench.data.sampling import clip_indices
from echobench.data.synthecho import SynthEchoDataset
from echobench.errors import UserError
from echobench.init_weights import load_init_weights
from echobench.pretrain import checkpoint_hash, pretraining_table
from echobench.train import TrainLoop, complete_groups, cosine_value, param_groups, scheduled
from echobench.validate import CHECKS, _train, tiny_batch, validate
from echobench_plugins.videomae import VideoMAE
from tests.cli_run import TINY, invoke
from tests.toy_methods import FlowLike, NoGradEncoder, StrayNoDecay, ToyEMATeacher


def test_ema_teacher_plugin_whose_encoder_is_the_teacher_passes_validate_plugin() -> None:
    checks = validate(ToyEMATeacher)
    assert [c.name for c in checks] == list(CHECKS)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_encoder_without_gradient_fails_validate_plugin_with_one_line() -> None:
    checks = validate(NoGradEncoder)
    failed = checks[-1]
    assert failed.name == "finetune" and not failed.passed
    assert "without gradient" in failed.detail and "\n" not in failed.detail


def test_no_weight_decay_name_matching_no_parameter_fails() -> None:
    failed = validate(StrayNoDecay)[-1]
    assert failed.name == "no_weight_decay" and not failed.passed
    assert "'studnet.cls_token'" in failed.detail


def test_videomae_decoder_mask_token_is_not_weight_decayed() -> None:
    method = VideoMAE(VideoMAE.Config(model="vit_tiny", frames=4, stride=1, size=32, patch=8, tubelet=2))
    token = method.decoder.mask_token
    group = next(g for g in param_groups(method, set()) if any(p is token for p in g["params"]))
    assert group["wd_scale"] == 0.0
    decayed = next(g for g in param_groups(method, set()) if g["wd_scale"] == 1.0)
    assert any(p is method.encoder.blocks[0].attn.qkv.weight for p in decayed["params"])


def test_plugin_param_groups_must_cover_every_trainable_parameter_once() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with pytest.raises(UserError, match="'1.weight' is in no group"):
        complete_groups(model, [{"params": list(model[0].parameters())}], "method 'x'")
    groups = complete_groups(model, [{"params": list(model.parameters()), "wd_scale": 0.5}], "method 'x'")
    assert groups[0]["lr_scale"] == 1.0 and groups[0]["wd_scale"] == 0.5


def test_weight_decay_schedule_is_a_cosine_from_start_to_end() -> None:
    config = PretrainConfig(steps=11, weight_decay=0.04, weight_decay_end=0.4, lr=1.0, lr_scaling="none")
    assert scheduled(config, 0)[1] == pytest.approx(0.04)
    assert scheduled(config, 10)[1] == pytest.approx(0.4)
    assert scheduled(config, 5)[1] == pytest.approx(0.22)
    assert cosine_value(3, 11, 1.0, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))
    assert scheduled(PretrainConfig(weight_decay=0.05), 7)[1] == 0.05


def test_train_state_epoch_and_progress() -> None:
    state = TrainState.at(7, 3, 10)
    assert (state.epoch, state.steps_per_epoch, state.progress) == (2, 3, 0.7)
    assert state.epoch_float == pytest.approx(7 / 3)


def test_resume_with_ema_centre_and_weight_decay_schedule_matches_uninterrupted(tmp_path: Path) -> None:
    config = ToyEMATeacher.Config(model="vit_tiny", frames=4, stride=1, size=32, patch=8, tubelet=2)

    def build() -> ToyEMATeacher:
        torch.manual_seed(0)
        return ToyEMATeacher(config)

    straight = _train(build(), tmp_path / "a", 2, 1, None)
    _train(build(), tmp_path / "b", 2, 1, 2)
    assert ckpt.read_meta(tmp_path / "b").step == 2
    resumed = _train(build(), tmp_path / "b", 2, 1, None)
    assert straight["center"].abs().sum() > 0
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name
    skipped = _train(build(), tmp_path / "c", 2, 1, None)
    assert torch.equal(skipped["encoder.blocks.0.attn.qkv.weight"], straight["encoder.blocks.0.attn.qkv.weight"])


def test_hooks_run_in_order_and_see_the_train_state(tmp_path: Path) -> None:
    calls: list[tuple[str, int, float]] = []
    model = nn.Linear(3, 1)

    def step(batch: torch.Tensor, state: TrainState) -> object:
        calls.append(("step", state.step, state.epoch))
        from echobench.api import LossOutput

        return LossOutput(loss=model(batch).square().mean())

    def before(state: TrainState, optimizer: torch.optim.Optimizer) -> None:
        assert model.weight.grad is not None
        if state.epoch == 0:
            model.weight.grad.zero_()  # DINO's frozen last layer in the first epoch
        calls.append(("before", state.step, optimizer.param_groups[0]["weight_decay"]))

    def after(state: TrainState) -> None:
        calls.append(("after", state.step, state.epoch))

    def meta(step: int, complete: bool) -> ckpt.CheckpointMeta:
        return ckpt.CheckpointMeta("toy", "0", {}, step, 4, complete, {})

    config = PretrainConfig(
        steps=4, lr=0.1, lr_scaling="none", weight_decay=0.0, amp="off", device="cpu", grad_clip=0.0
    )
    weight0 = model.weight.detach().clone()
    loop = TrainLoop(
        model, step, config, tmp_path, meta, after_step=after, before_optimizer_step=before, steps_per_epoch=2
    )
    loop.run(lambda start: iter([torch.ones(2, 3)] * 4))
    assert [c[0] for c in calls] == ["step", "before", "after"] * 4
    assert [c[2] for c in calls if c[0] == "after"] == [0, 0, 1, 1]
    assert not torch.equal(model.weight.detach(), weight0)


def _synth_cache(synth_root: Path, size: int = 32) -> tuple[SynthEchoDataset, DecodeCache]:
    dataset = SynthEchoDataset(synth_root)
    return dataset, DecodeCache.build(dataset, size)


def test_prepare_sample_runs_in_worker_processes_and_is_deterministic(synth_root: Path) -> None:
    dataset, cache = _synth_cache(synth_root)
    table = dataset.split_table("train")
    spec = ClipSpec(frames=4, stride=2, size=32, clips_per_video=2)
    method = FlowLike(FlowLike.Config(frames=4, stride=2, size=32, patch=8, tubelet=2))
    clips = ClipDataset(cache, table, spec, 0.2, 0.2, seed=3, labels=None, prepare=method.prepare_sample)

    def first_batches(workers: int) -> list:
        iterator = step_batches(clips, 4, 3, 0, workers)
        return [next(iterator) for _ in range(3)]

    parallel, serial = first_batches(2), first_batches(0)
    pids = {int(p) for batch in parallel for p in batch.extras["pid"].flatten()}
    assert os.getpid() not in pids and len(pids) == 2
    for a, b in zip(parallel, serial, strict=True):
        assert torch.equal(a.extras["noise"], b.extras["noise"])
        assert torch.equal(a.extras["mean_level"], b.extras["mean_level"])
        pixels = torch.stack([(v * 0.2 + 0.2).mean(dim=(1, 2, 3, 4)) * 255 for v in a.views]).mean(0)
        assert torch.allclose(a.extras["mean_level"][:, 0], pixels, atol=1e-2)
        assert a.norm == (0.2, 0.2)


def test_batches_carry_the_labels_the_clip_spec_asks_for(synth_root: Path) -> None:
    dataset, cache = _synth_cache(synth_root)
    table = dataset.split_table("train")
    spec = ClipSpec(frames=4, stride=2, size=32, tasks=("ef", "ef_anomaly"))
    from echobench.data.tasks import get_task

    labels = {t: get_task(t).targets(table, dataset.name)[0] for t in spec.tasks}
    clips = ClipDataset(cache, table, spec, 0.2, 0.2, seed=0, labels=labels)
    batch = next(step_batches(clips, 4, 0, 0, 0))
    rows = table.set_index("video_id")
    expected_ef = [float(rows.loc[v, "ef"]) for v in batch.video_ids]
    np.testing.assert_allclose(batch.labels["ef"].numpy(), expected_ef)
    assert batch.labels["ef_anomaly"].dtype == torch.int64


def test_time_based_clips_use_each_videos_fps() -> None:
    spec = ClipSpec(frames=10, seconds=1.0, size=32, start="fixed")
    np.testing.assert_array_equal(clip_indices(200, spec, fps=50.0)[0], np.arange(0, 50, 5))
    np.testing.assert_array_equal(clip_indices(200, spec, fps=30.0)[0], np.arange(0, 30, 3))
    np.testing.assert_array_equal(clip_indices(200, spec, fps=25.0)[0], np.rint(np.arange(10) * 2.5).astype(int))
    random_spec = ClipSpec(frames=10, seconds=1.0, size=32)
    starts = {int(clip_indices(60, random_spec, np.random.default_rng(i), fps=50.0)[0, 0]) for i in range(50)}
    assert max(starts) <= 60 - 46 and len(starts) > 5
    with pytest.raises(UserError, match="frame rate"):
        clip_indices(60, spec, fps=0.0)


def test_several_clips_of_a_video_have_distinct_starts() -> None:
    spec = ClipSpec(frames=4, stride=2, size=32, clips_per_video=2)
    for seed in range(200):
        indices = clip_indices(12, spec, np.random.default_rng(seed), count=2, fps=50.0)
        assert indices[0, 0] != indices[1, 0]


def _weights_file(tmp_path: Path, method: nn.Module, scale: float = 2.0) -> Path:
    state = {k: v * scale for k, v in method.state_dict().items()}
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_init_from_loads_safetensors_and_a_weights_only_state_dict(tmp_path: Path) -> None:
    config = VideoMAE.Config(model="vit_tiny", frames=4, stride=1, size=32, patch=8, tubelet=2)
    source = VideoMAE(config)
    path = _weights_file(tmp_path, source.encoder)
    target = VideoMAE(config)

    def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f"encoder.{k}": v for k, v in state.items()}

    info = load_init_weights(target, path, "videomae", rename)
    assert torch.equal(target.encoder.blocks[0].attn.qkv.weight, source.encoder.blocks[0].attn.qkv.weight * 2)
    assert info["loaded"] == len(source.encoder.state_dict())
    nested = tmp_path / "nested.pt"
    torch.save({"epoch": 3, "model": {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}}, nested)
    load_init_weights(target, nested, "videomae", lambda s: {k.removeprefix("model."): v for k, v in s.items()})
    assert torch.equal(target.encoder.blocks[0].attn.qkv.weight, source.encoder.blocks[0].attn.qkv.weight)


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("code ran",))


def test_init_from_refuses_pickled_objects_missing_files_and_other_shapes(tmp_path: Path) -> None:
    config = VideoMAE.Config(model="vit_tiny", frames=4, stride=1, size=32, patch=8, tubelet=2)
    method = VideoMAE(config)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(UserError, match="not a plain tensor file"):
        load_init_weights(method, evil, "videomae")
    with pytest.raises(UserError, match="does not exist"):
        load_init_weights(method, tmp_path / "absent.safetensors", "videomae")
    other = VideoMAE(VideoMAE.Config(model="vit_small", frames=4, stride=1, size=32, patch=8, tubelet=2))
    with pytest.raises(UserError, match="has shape"):
        load_init_weights(method, _weights_file(tmp_path, other), "videomae")


def test_init_file_content_not_path_enters_the_checkpoint_hash(tmp_path: Path, synth_root: Path) -> None:
    dataset = SynthEchoDataset(synth_root)
    config = VideoMAE.Config(model="vit_tiny", frames=4, stride=1, size=32, patch=8, tubelet=2)
    method = VideoMAE(config)
    first = _weights_file(tmp_path, method.encoder)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    second = copy_dir / "same.safetensors"
    second.write_bytes(first.read_bytes())
    hashes = [checkpoint_hash(method, PretrainConfig(init_from=str(p)), dataset, ("train",)) for p in (first, second)]
    assert hashes[0] == hashes[1]
    changed = _weights_file(copy_dir, method.encoder, scale=3.0)
    assert checkpoint_hash(method, PretrainConfig(init_from=str(changed)), dataset, ("train",)) != hashes[0]
    assert checkpoint_hash(method, PretrainConfig(), dataset, ("train",)) != hashes[0]


def test_pretrain_filter_keeps_only_videos_with_the_label_value(synth_root: Path) -> None:
    dataset = SynthEchoDataset(synth_root)
    kept = pretraining_table(dataset, ("train",), "ef_anomaly=0")
    ef = kept["ef"].astype(float)
    assert len(kept) > 0 and ((ef >= 45) & (ef <= 75)).all()
    train = dataset.split_table("train")
    assert len(kept) == int(((train["ef"] >= 45) & (train["ef"] <= 75)).sum())
    with pytest.raises(UserError, match="TASK=VALUE"):
        pretraining_table(dataset, ("train",), "ef_anomaly")
    with pytest.raises(UserError, match="unknown task"):
        pretraining_table(dataset, ("train",), "ef_anomally=0")


@pytest.fixture
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    real = registry.load_method
    toys = {"toy_ema": ToyEMATeacher}
    monkeypatch.setattr(registry, "load_method", lambda name: toys[name] if name in toys else real(name))


def test_ema_plugin_pretrains_with_epochs_and_fine_tunes_with_a_weight_normed_head(
    toy_registry: None, synth_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ToyEMATeacher.states.clear()
    base = ["--dataset", "synthecho", "--data-root", str(synth_root), "--method", "toy_ema", *TINY]
    invoke(
        monkeypatch,
        capsys,
        ["pretrain", *base, "--set", "pretrain.steps=12", "--set", "data.pretrain_filter=ef_anomaly=0"],
    )
    dataset = SynthEchoDataset(synth_root)
    per_epoch = len(pretraining_table(dataset, ("train",), "ef_anomaly=0")) // 2
    assert [s.epoch for s in ToyEMATeacher.states] == [s // per_epoch for s in range(12)]
    assert {s.steps_per_epoch for s in ToyEMATeacher.states} == {per_epoch}
    folder = next(p for p in (Path(os.environ["ECHOBENCH_HOME"]) / "checkpoints" / "toy_ema").iterdir() if p.is_dir())
    meta = json.loads((folder / ckpt.META_FILE).read_text())
    assert meta["extra"]["pretrain_filter"] == "ef_anomaly=0"
    assert meta["extra"]["num_pretrained_videos"] == len(pretraining_table(dataset, ("train",), "ef_anomaly=0"))
    torch.manual_seed(0)
    untrained = ToyEMATeacher(ToyEMATeacher.Config(**meta["method_config"]))
    fresh = ToyEMATeacher(ToyEMATeacher.Config(**meta["method_config"]))
    ckpt.load_model(folder, fresh, method="toy_ema")
    assert not torch.equal(fresh.head.weight_v, untrained.head.weight_v)
    out = invoke(
        monkeypatch,
        capsys,
        [
            "run",
            *base,
            "--protocol",
            "finetune-partial",
            "--json",
            "--set",
            "pretrain.steps=12",
            "--set",
            "data.pretrain_filter=ef_anomaly=0",
            "--set",
            "protocol.steps=2",
            "--set",
            "protocol.eval_every=1",
            "--set",
            "protocol.batch_size=2",
            "--set",
            "protocol.ci_resamples=20",
        ],
    )
    assert json.loads(out)["metrics"]["mae"] > 0


def test_bad_init_from_is_one_line_exit_2_with_nothing_written(
    tmp_path: Path, synth_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from echobench.cli import main

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": _Payload()}))
    for path in (evil, tmp_path / "absent.pt"):
        argv = [
            "echobench",
            "pretrain",
            "--dataset",
            "synthecho",
            "--data-root",
            str(synth_root),
            "--method",
            "videomae",
            *TINY,
            "--set",
            f"pretrain.init_from={path}",
        ]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pretrain.init_from" in err
    home = Path(os.environ["ECHOBENCH_HOME"])
    assert not (home / "checkpoints").exists() and not (home / "decoded").exists()


def test_tiny_batch_matches_clip_spec_views() -> None:
    batch = tiny_batch(ClipSpec(frames=4, stride=1, size=32, clips_per_video=3), 2, 1)
    assert len(batch.views) == 3 and batch.frame_indices.shape == (2, 3, 4)
