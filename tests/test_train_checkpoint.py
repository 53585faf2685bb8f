import pytest
import torch
from torch import nn

from echobench import checkpoint as ckpt
from echobench.api import LossOutput
from echobench.config import PretrainConfig
from echobench.errors import UserError
from echobench.train import TrainLoop, lr_factor


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))

    def step(self, batch, state):
        x, y = batch
        loss = ((self.net(x).squeeze(-1) - y) ** 2).mean()
        return LossOutput(loss=loss, terms={"mse": float(loss.detach())})


def batches_from(start):
    step = start
    while True:
        g = torch.Generator().manual_seed(step)
        x = torch.randn(8, 4, generator=g)
        yield x, x.sum(-1)
        step += 1


def meta_for(step, complete):
    return ckpt.CheckpointMeta("toy", "1", {}, step, 10, complete, {})


def make_loop(folder, model, **kw):
    cfg = PretrainConfig(steps=10, lr=1e-2, lr_scaling="none", checkpoint_every=3, amp="off", device="cpu")
    return TrainLoop(model=model, step_fn=model.step, config=cfg, folder=folder, make_meta=meta_for, **kw)


def test_resume_reproduces_uninterrupted_training(tmp_path):
    torch.manual_seed(0)
    straight = Toy()
    torch.manual_seed(0)
    interrupted = Toy()
    assert make_loop(tmp_path / "a", straight).run(batches_from) == 10

    assert make_loop(tmp_path / "b", interrupted, stop_after=6).run(batches_from) == 6
    partial = ckpt.read_meta(tmp_path / "b")
    assert partial.step == 6 and not partial.complete
    assert set(partial.files) == {"model", "optimizer"}

    torch.manual_seed(1)
    resumed = Toy()
    assert make_loop(tmp_path / "b", resumed).run(batches_from) == 10
    final = ckpt.read_meta(tmp_path / "b")
    assert final.complete and final.step == 10
    assert set(final.files) == {"model"}
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted([final.files["model"]["name"], "meta.json"])
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_checkpoint_round_trip_and_wrong_method(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    ckpt.save_model(tmp_path, model, meta_for(10, True))
    other = Toy()
    ckpt.load_model(tmp_path, other, method="toy")
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(UserError, match="saved by method 'toy', not 'videomae'"):
        ckpt.load_model(tmp_path, other, method="videomae")
    wider = nn.Module()
    wider.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.Linear(16, 1))
    with pytest.raises(UserError, match="does not fit"):
        ckpt.load_model(tmp_path, wider, method="toy")
    (tmp_path / ckpt.read_meta(tmp_path).files["model"]["name"]).write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="do not match their hash"):
        ckpt.load_model(tmp_path, other, method="toy")


def test_non_finite_loss_is_a_user_error(tmp_path):
    model = Toy()

    def nan_step(batch, state):
        return LossOutput(loss=model.step(batch, state).loss * float("nan"), terms={"bad": float("nan")})

    cfg = PretrainConfig(steps=3, amp="off", device="cpu")
    loop = TrainLoop(model=model, step_fn=nan_step, config=cfg, folder=tmp_path, make_meta=meta_for)
    with pytest.raises(UserError, match="non-finite loss at step 0"):
        loop.run(batches_from)
    assert ckpt.read_meta(tmp_path) is None


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
