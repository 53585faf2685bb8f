"""DISCOVER (seed 004) and the image-DINO baseline: equations against independent NumPy computations, the
teacher–student mechanics, bad configs, a NaN stop, and both plugins through the CLI on SynthEcho."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import KNN, TINY, invoke

from echobench import checkpoint as ckpt
from echobench.api import LossOutput, TrainState
from echobench.config import PretrainConfig
from echobench.errors import UserError
from echobench.models.distill import teacher_temperature, warmup_epochs_of_run
from echobench.train import TrainLoop
from echobench.validate import TINY as VALIDATE_TINY
from echobench.validate import tiny_batch
from echobench_plugins.discover import Discover, DiscoverConfig
from echobench_plugins.discover.losses import center_batch_values, scd_loss, tubelet_average
from echobench_plugins.image_dino import ImageDINO, ImageDINOConfig
from echobench_plugins.image_dino.method import cosine_momentum, random_resized_crops

# The smallest DISCOVER that exercises every part: a ViT-T on 4-frame 32² clips, small heads and prototypes.
SMALL = {**VALIDATE_TINY, "head_out_dim": 32, "head_hidden_dim": 32, "head_bottleneck_dim": 16, "scd_prototypes": 20}


def small_discover(**changes: object) -> Discover:
    torch.manual_seed(0)
    return Discover(dataclasses.replace(DiscoverConfig(), **{**SMALL, **changes}))


def np_sinkhorn(scores: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """SwAV Algorithm 1 in float64, direct (not log-space) form: rows → 1/K, columns → 1/N, times N."""
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, n = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True) * k
        q /= q.sum(axis=0, keepdims=True) * n
    return (q * n).T


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_scd(z_v: np.ndarray, z_i: np.ndarray, protos: np.ndarray, tau: float, hard: bool) -> float:
    def cosines(z: np.ndarray) -> np.ndarray:
        flat = z.reshape(-1, z.shape[-1])
        flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)
        return flat @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T

    s_v, s_i = cosines(z_v), cosines(z_i)
    q_v, q_i = np_sinkhorn(s_v, 0.05, 10), np_sinkhorn(s_i, 0.05, 10)
    log_p_v, log_p_i = np_log_softmax(s_v / tau), np_log_softmax(s_i / tau)
    if hard:
        return float(-np.mean([log_p_v[n, q_i[n].argmax()] for n in range(len(s_v))]))
    decoder_side = -np.mean([sum(q_i[n, k] * log_p_v[n, k] for k in range(s_v.shape[1])) for n in range(len(s_v))])
    image_side = -np.mean([sum(q_v[n, k] * log_p_i[n, k] for k in range(s_i.shape[1])) for n in range(len(s_i))])
    return float(decoder_side + image_side)


@pytest.mark.parametrize("hard", [False, True])
def test_scd_loss_matches_an_independent_sinkhorn_and_cross_entropy(hard: bool) -> None:
    rng = np.random.default_rng(0)
    z_v, z_i = rng.normal(size=(2, 5, 6)), rng.normal(size=(2, 5, 6))
    protos = rng.normal(size=(7, 6))
    got = scd_loss(*(torch.tensor(a, dtype=torch.float32) for a in (z_v, z_i, protos)), tau=0.1, hard=hard)
    assert float(got) == pytest.approx(np_scd(z_v, z_i, protos, 0.1, hard), rel=1e-4)
    flat = scd_loss(*(torch.tensor(a, dtype=torch.float32) for a in (z_v.reshape(10, 6), z_i.reshape(10, 6), protos)))
    assert float(flat) == pytest.approx(np_scd(z_v, z_i, protos, 0.1, False), rel=1e-4)


@pytest.mark.parametrize("hard", [False, True])
def test_scd_gradients_reach_the_video_side_and_prototypes_only(hard: bool) -> None:
    torch.manual_seed(0)
    z_v, z_i, protos = (torch.randn(shape, requires_grad=True) for shape in ((2, 4, 8), (2, 4, 8), (6, 8)))
    scd_loss(z_v, z_i, protos, hard=hard).backward()
    assert z_v.grad is not None and bool(z_v.grad.abs().sum() > 0)
    assert protos.grad is not None and bool(protos.grad.abs().sum() > 0)
    assert z_i.grad is None


def test_tubelet_average_is_the_mean_over_each_tubelets_frames() -> None:
    tokens = torch.randn(2, 6, 4, 3)
    got = tubelet_average(tokens, 3)
    assert got.shape == (2, 2 * 4, 3)
    for b in range(2):
        for t in range(2):
            for p in range(4):
                expected = sum(tokens[b, 3 * t + f, p] for f in range(3)) / 3
                torch.testing.assert_close(got[b, t * 4 + p], expected)


def dino_code_schedule(warmup: int, epochs: int) -> np.ndarray:
    """DINO's and DISCOVR's per-epoch teacher-temperature table, written out with numpy as their code does."""
    return np.concatenate((np.linspace(0.04, 0.07, warmup), np.ones(epochs - warmup) * 0.07))


@pytest.mark.parametrize("warmup", [30, 3, 2, 1, 0])
def test_teacher_temperature_is_the_per_epoch_linspace_of_dinos_code(warmup: int) -> None:
    table = dino_code_schedule(warmup, 400)
    got = np.array([teacher_temperature(epoch, warmup) for epoch in range(400)])
    np.testing.assert_allclose(got, table, rtol=1e-12)
    if warmup == 30:
        # linspace reaches 0.07 in epoch 29, one epoch before a linear ramp to epoch 30 would.
        assert got[28] < 0.07 and got[29] == pytest.approx(0.07) and got[1] == pytest.approx(0.04 + 0.03 / 29)


def test_warmup_epochs_are_the_run_fraction_rounded_to_whole_epochs() -> None:
    assert warmup_epochs_of_run(30 / 400, 400 * 50, 50) == 30
    assert warmup_epochs_of_run(30 / 400, 40 * 7, 7) == 3
    assert warmup_epochs_of_run(30 / 400, 30 * 10, 10) == 2  # 2.25 epochs
    assert warmup_epochs_of_run(30 / 400, 2 * 50, 50) == 0  # 0.15 epochs: the quick run has no warm-up
    assert warmup_epochs_of_run(0.1, 5 * 10, 10) == 1  # 0.5 rounds up
    with pytest.raises(ValueError):
        warmup_epochs_of_run(-0.1, 10, 1)


def test_discover_teacher_temperature_is_constant_within_each_epoch() -> None:
    method = small_discover()
    paper = dino_code_schedule(30, 400)
    steps = 400 * 50
    for step in (0, 49, 50, 99, 28 * 50 + 49, 29 * 50, 399 * 50):
        got = method.teacher_temperature(TrainState.at(step, 50, steps))
        assert got == pytest.approx(float(paper[step // 50]), rel=1e-12)
    # 300 steps of 10 per epoch: 30 epochs, whose 30/400 share rounds to a 2-epoch warm-up, linspace(0.04, 0.07, 2).
    assert method.teacher_temperature(TrainState.at(9, 10, 300)) == pytest.approx(0.04)
    assert method.teacher_temperature(TrainState.at(10, 10, 300)) == pytest.approx(0.07)
    assert method.teacher_temperature(TrainState.at(0, 50, 100)) == pytest.approx(0.07)


def test_image_dino_logs_the_per_epoch_teacher_temperature() -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(ImageDINOConfig(), **VALIDATE_TINY, head_out_dim=32, frames_per_clip=1)
    method = ImageDINO(config)
    batch = tiny_batch(method.clip_spec(), 2, 1)
    for step in (49, 50, 29 * 50):
        out = method.pretrain_step(batch, TrainState.at(step, 50, 400 * 50))
        assert out.terms["teacher_temp"] == pytest.approx(float(dino_code_schedule(30, 400)[step // 50]), rel=1e-12)


def test_ema_moves_both_teachers_towards_their_students() -> None:
    method = small_discover()
    with torch.no_grad():
        for param in [*method.video_student.parameters(), *method.image_student.parameters()]:
            param.add_(torch.randn_like(param))
    pairs = ((method.video_teacher, method.video_student), (method.image_teacher, method.image_student))
    before = [{n: p.clone() for n, p in teacher.named_parameters()} for teacher, _ in pairs]
    method.after_step(TrainState.at(0, 5, 10))
    for (teacher, student), old in zip(pairs, before, strict=True):
        students = dict(student.named_parameters())
        for name, param in teacher.named_parameters():
            torch.testing.assert_close(param, 0.996 * old[name] + 0.004 * students[name])


def test_centres_follow_the_teacher_logits_and_stay_zero_without_centring() -> None:
    method = small_discover()
    batch = tiny_batch(method.clip_spec(), 2, 1)
    clips = batch.clips
    with torch.no_grad():
        video_logits = method.video_teacher.head(method.video_teacher.encoder(clips)[:, 0])
        frames = clips.transpose(1, 2).reshape(-1, *clips.shape[1:2], *clips.shape[3:])
        image_logits = method.image_teacher.head(method.image_teacher.encoder.encode_frames(frames)[:, 0])
    method.pretrain_step(batch, TrainState.at(0, 5, 10))
    torch.testing.assert_close(method.video_center, 0.1 * video_logits.mean(dim=0, keepdim=True))
    torch.testing.assert_close(method.image_center, 0.1 * image_logits.mean(dim=0, keepdim=True))
    literal = small_discover(head="linear", center=False)
    literal.pretrain_step(batch, TrainState.at(0, 5, 10))
    assert not literal.video_center.any() and not literal.image_center.any()

    # DISCOVR's code: the EMA (momentum 0.8) of the centred, sharpened teacher probabilities; 10 steps of 5 per
    # epoch are 2 epochs, no warm-up, so τ_t = 0.07.
    code = small_discover(center_from="probabilities", center_momentum=0.8)
    code.video_center.fill_(0.5)
    code.pretrain_step(batch, TrainState.at(0, 5, 10))

    def np_probabilities(logits: torch.Tensor, center: float) -> np.ndarray:
        z = (logits.double().numpy() - center) / 0.07
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    video_expected = 0.8 * 0.5 + 0.2 * np_probabilities(video_logits, 0.5).mean(axis=0, keepdims=True)
    image_expected = 0.2 * np_probabilities(image_logits, 0.0).mean(axis=0, keepdims=True)
    np.testing.assert_allclose(code.video_center.double().numpy(), video_expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(code.image_center.double().numpy(), image_expected, rtol=1e-5, atol=1e-7)


def test_center_batch_values_are_logits_or_centred_sharpened_probabilities() -> None:
    logits = torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 3.0]])
    center = torch.tensor([[0.5, 0.0, 1.0]])
    torch.testing.assert_close(center_batch_values(logits, center, 0.1, "logits"), logits)
    shifted = [[(1.0 - 0.5) / 0.1, 2.0 / 0.1, 3.0 / 0.1], [-0.5 / 0.1, 0.0, 2.0 / 0.1]]
    expected = [[np.exp(v) / sum(np.exp(u) for u in row) for v in row] for row in shifted]
    got = center_batch_values(logits, center, 0.1, "probabilities")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_code_image_loss_scale_is_256_over_the_frames_it_averages() -> None:
    plain, scaled = small_discover(), small_discover(image_loss_scale="per_256_frames")
    batch = tiny_batch(plain.clip_spec(), 2, 1)
    torch.manual_seed(3)
    base = plain.pretrain_step(batch, TrainState.at(0, 5, 10))
    torch.manual_seed(3)
    out = scaled.pretrain_step(batch, TrainState.at(0, 5, 10))
    frames = 2 * plain.config.frames  # every frame of both clips (image_frames = None)
    assert out.terms["image_distill"] == pytest.approx(base.terms["image_distill"] * 256 / frames, rel=1e-5)
    assert out.terms["video_distill"] == pytest.approx(base.terms["video_distill"], rel=1e-6)


def test_gradients_reach_students_decoder_and_prototypes_but_not_teachers() -> None:
    method = small_discover(image_frames=2)
    out = method.pretrain_step(tiny_batch(method.clip_spec(), 2, 1), TrainState.at(0, 5, 10))
    assert set(out.terms) == {"video_distill", "image_distill", "scd", "teacher_temp"}
    summed = out.terms["video_distill"] + out.terms["image_distill"] + out.terms["scd"]
    assert float(out.loss.detach()) == pytest.approx(summed, rel=1e-5)
    out.loss.backward()

    def reached(module: torch.nn.Module) -> bool:
        return all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters() if p.requires_grad)

    assert reached(method.video_student.encoder.blocks) and reached(method.decoder)
    assert reached(method.image_student.encoder.blocks)
    assert method.prototypes.grad is not None and bool(method.prototypes.grad.abs().sum() > 0)
    teachers = [*method.video_teacher.parameters(), *method.image_teacher.parameters()]
    assert all(p.grad is None and not p.requires_grad for p in teachers)


def test_last_head_layer_is_frozen_in_the_first_epoch_only() -> None:
    method = small_discover()
    last = [*method.video_student.head.last_layer_parameters(), *method.image_student.head.last_layer_parameters()]
    trainable = [p for p in last if p.requires_grad]
    for epoch, frozen in ((0, True), (1, False)):
        for param in trainable:
            param.grad = torch.ones_like(param)
        method.on_before_optimizer_step(TrainState.at(epoch * 5, 5, 10), torch.optim.SGD(trainable, lr=0.1))
        assert all((p.grad is None) == frozen for p in trainable)


def test_encode_uses_the_teacher_by_default_and_the_student_on_request() -> None:
    teacher = small_discover()
    assert teacher.encoder is teacher.video_teacher.encoder
    student = small_discover(encode_from="student")
    assert student.encoder is student.video_student.encoder


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_views", 0),
        ("image_views", 0),
        ("student_temp", 0.0),
        ("scd_temp", -0.1),
        ("scd_prototypes", 1),
        ("video_mask_ratio", 1.0),
        ("image_mask_ratio", 0.0),
        ("frames", 5),
    ],
)
def test_invalid_discover_configs_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"method.{field} must be"):
        dataclasses.replace(DiscoverConfig(), **{**SMALL, field: value})


def test_invalid_image_dino_config_is_a_user_error_naming_the_field() -> None:
    with pytest.raises(UserError, match="method.global_crops must be"):
        ImageDINOConfig(global_crops=1)


def test_nan_loss_stops_with_the_step_and_terms_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    method = small_discover()
    spec = method.clip_spec()

    def step(batch, state: TrainState) -> LossOutput:
        out = method.pretrain_step(batch, state)
        if state.step == 2:
            return LossOutput(out.loss * float("nan"), {**out.terms, "scd": float("nan")})
        return out

    config = PretrainConfig(steps=4, batch_size=2, checkpoint_every=1, amp="off", device="cpu", lr_scaling="none")
    loop = TrainLoop(
        model=method,
        step_fn=step,
        config=config,
        folder=tmp_path,
        make_meta=lambda s, c: ckpt.CheckpointMeta("discover", "0.1.0", {}, s, 4, c, {}),
        after_step=method.after_step,
    )
    with pytest.raises(UserError, match=r"non-finite loss at step 2 \(video_distill=.*scd=nan"):
        loop.run(lambda start: (tiny_batch(spec, 2, 1, seed=s) for s in range(start, 4)))
    meta = ckpt.read_meta(tmp_path)
    assert meta is not None and meta.step == 2 and not meta.complete
    restored = small_discover()
    ckpt.load_model(tmp_path, restored, method="discover")
    assert all(bool(torch.isfinite(v).all()) for v in restored.state_dict().values() if v.is_floating_point())


def test_cosine_teacher_momentum_and_crops() -> None:
    assert cosine_momentum(0.996, 0.0) == pytest.approx(0.996)
    assert cosine_momentum(0.996, 0.5) == pytest.approx(0.998)
    assert cosine_momentum(0.996, 1.0) == pytest.approx(1.0)
    image = torch.arange(64.0).reshape(1, 1, 8, 8)
    whole = random_resized_crops(image, (1.0, 1.0), torch.Generator().manual_seed(0), ratio=(1.0, 1.0))
    torch.testing.assert_close(whole, image)
    small = random_resized_crops(image.expand(16, -1, -1, -1), (0.1, 0.2), torch.Generator().manual_seed(0))
    assert small.shape == (16, 1, 8, 8)
    # A crop of at most a fifth of the area spans a narrower range of intensities than the whole image.
    assert bool(((small.amax(dim=(1, 2, 3)) - small.amin(dim=(1, 2, 3))) < 63).all())


def test_image_dino_encodes_the_mean_of_frame_cls_tokens() -> None:
    torch.manual_seed(0)
    method = ImageDINO(dataclasses.replace(ImageDINOConfig(), **VALIDATE_TINY, head_out_dim=32)).eval()
    clips = torch.randn(2, 1, 4, 32, 32)
    with torch.no_grad():
        embedding = method.encode(clips)
        per_frame = [method.encoder.encode_frames(clips[:, :, f])[:, 0] for f in range(4)]
    torch.testing.assert_close(embedding.pooled, torch.stack(per_frame).mean(dim=0))
    assert method.encoder.grid == (4, 4, 4) and embedding.tokens.shape == (2, 4, 4, 4, 192)


@pytest.mark.parametrize("method", ["discover", "image_dino"])
def test_knn_and_linear_run_on_synthecho(monkeypatch, capsys, synth_root, method: str) -> None:
    base = ["run", "--method", method, "--dataset", "synthecho", "--data-root", str(synth_root), "--json", *TINY]
    small = ["--set", "pretrain.steps=2", "--set", "method.head_out_dim=64"]
    knn = json.loads(invoke(monkeypatch, capsys, [*base, *small, "--protocol", "knn", *KNN]))
    assert knn["method"] == method and {"balanced_accuracy", "auroc"} <= set(knn["metrics"])
    linear_settings = ["--set", "protocol.epochs=3", "--set", "protocol.ci_resamples=20"]
    linear = json.loads(invoke(monkeypatch, capsys, [*base, *small, "--protocol", "linear", *linear_settings]))
    assert linear["checkpoint_hash"] == knn["checkpoint_hash"]
    assert linear["task"] == "ef" and np.isfinite(linear["metrics"]["r2"])


def test_knn_discover_spec_tiles_videos_and_calls_any_abnormal_clip(monkeypatch, capsys, synth_root) -> None:
    argv = ["run", "--method", "random_init", "--protocol", "knn-discover", "--data-root", str(synth_root)]
    summary = json.loads(invoke(monkeypatch, capsys, [*argv, "--json", *TINY, *KNN]))
    record = json.loads(Path(summary["result_path"]).read_text())
    assert summary["task"] == "ef_anomaly" and summary["protocol"] == "knn-discover"
    assert record["eval_clips"] == {"start": "all", "num_clips": 1}
    assert record["protocol_config"]["aggregate"] == "any"
    assert any(key.startswith("val_balanced_accuracy@k=") for key in summary["chosen"])
