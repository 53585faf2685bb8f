from dataclasses import dataclass

import pytest

from echobench.config import PretrainConfig, apply_overrides, check_ranges, parse_set, ranged, stable_hash
from echobench.errors import UserError


def test_parse_set_types_and_sections():
    parsed = parse_set(["method.mask_ratio=0.75", "pretrain.steps=50", "protocol.ks=[10, 20]", "data.root=/x y"])
    assert parsed == {
        "method": {"mask_ratio": 0.75},
        "pretrain": {"steps": 50},
        "protocol": {"ks": [10, 20]},
        "data": {"root": "/x y"},
    }
    assert parse_set(["protocol.eval_clips.num_clips=4"]) == {"protocol": {"eval_clips.num_clips": 4}}


def test_parse_set_reads_exponent_floats_as_numbers():
    # YAML 1.1 reads "1e-3" as a string; a learning rate written so must still be a number.
    parsed = parse_set(["protocol.lr=1e-3", "pretrain.lr=3E+2", "protocol.steps=12", "method.name=1e", "data.x=.5"])
    assert parsed == {
        "protocol": {"lr": 0.001, "steps": 12},
        "pretrain": {"lr": 300.0},
        "method": {"name": "1e"},
        "data": {"x": 0.5},
    }
    assert isinstance(parsed["protocol"]["steps"], int)


@pytest.mark.parametrize(
    "item, message",
    [
        ("steps=50", "expected SECTION.KEY=VALUE"),
        ("pretrain.steps", "expected SECTION.KEY=VALUE"),
        ("pretrian.steps=5", "did you mean 'pretrain'"),
        ("method.=3", "expected SECTION.KEY=VALUE"),
        ("method.x=[1, 2", "malformed value"),
    ],
)
def test_parse_set_rejects_malformed(item, message):
    with pytest.raises(UserError, match=message):
        parse_set([item])


def test_apply_overrides_coerces_and_validates():
    cfg = apply_overrides(
        PretrainConfig(), {"steps": 50.0, "lr": 1, "betas": [0.8, 0.9], "amp": "off"}, where="pretrain"
    )
    assert cfg.steps == 50 and isinstance(cfg.steps, int)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.betas == (0.8, 0.9)
    with pytest.raises(UserError, match="did you mean 'steps'"):
        apply_overrides(PretrainConfig(), {"step": 5}, where="pretrain")
    with pytest.raises(UserError, match="must be an integer"):
        apply_overrides(PretrainConfig(), {"steps": "many"}, where="pretrain")
    with pytest.raises(UserError, match="must be one of"):
        apply_overrides(PretrainConfig(), {"amp": "fp8"}, where="pretrain")
    with pytest.raises(UserError, match="needs 2 values"):
        apply_overrides(PretrainConfig(), {"betas": [0.9]}, where="pretrain")


@dataclass
class _Cfg:
    a: int = 1
    b: str | None = None


def test_optional_fields_and_hash_stability():
    assert apply_overrides(_Cfg(), {"b": None}, where="x").b is None
    assert apply_overrides(_Cfg(), {"b": 3}, where="x").b == "3"
    assert stable_hash(_Cfg()) == stable_hash(_Cfg())
    assert stable_hash({"x": 1, "y": 2}) == stable_hash({"y": 2, "x": 1})
    assert stable_hash(_Cfg(a=2)) != stable_hash(_Cfg())
    assert len(stable_hash("x")) == 16


def test_effective_lr_linear_scaling():
    assert PretrainConfig(lr=1.5e-4, batch_size=256).effective_lr == pytest.approx(1.5e-4)
    assert PretrainConfig(lr=1.5e-4, batch_size=64).effective_lr == pytest.approx(1.5e-4 / 4)
    assert PretrainConfig(lr=1e-3, batch_size=8, lr_scaling="none").effective_lr == 1e-3


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("steps", 0, "pretrain.steps must be >= 1, got 0"),
        ("steps", -1, "pretrain.steps must be >= 1, got -1"),
        ("batch_size", 0, "pretrain.batch_size must be >= 1"),
        ("checkpoint_every", 0, "pretrain.checkpoint_every must be >= 1"),
        ("log_every", 0, "pretrain.log_every must be >= 1"),
        ("lr", 0, "pretrain.lr must be > 0"),
        ("lr", -1, "pretrain.lr must be > 0"),
        ("warmup_fraction", 1.0, "pretrain.warmup_fraction must be in [0, 1)"),
        ("betas", [0.9, 1.0], "pretrain.betas must be in [0, 1)"),
        ("grad_clip", -0.5, "pretrain.grad_clip must be >= 0"),
        ("lr", float("nan"), "pretrain.lr must be > 0"),
    ],
)
def test_declared_ranges_refuse_values_outside(field, value, message):
    with pytest.raises(UserError) as info:
        apply_overrides(PretrainConfig(), {field: value}, where="pretrain")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_declared_ranges_accept_their_bounds():
    cfg = apply_overrides(
        PretrainConfig(), {"steps": 1, "warmup_fraction": 0.0, "min_lr_ratio": 1.0, "grad_clip": 0}, where="p"
    )
    assert (cfg.steps, cfg.warmup_fraction, cfg.min_lr_ratio, cfg.grad_clip) == (1, 0.0, 1.0, 0.0)


@dataclass
class _Ranged:
    ratio: float = ranged(0.5, gt=0, lt=1)
    width: int | None = ranged(None, ge=1)
    name: str = "x"


def test_range_mechanism_works_for_any_dataclass():
    assert apply_overrides(_Ranged(), {"width": None}, where="protocol").width is None
    assert apply_overrides(_Ranged(), {"ratio": 0.25, "width": 3}, where="protocol") == _Ranged(0.25, 3)
    with pytest.raises(UserError, match=r"^protocol.ratio must be in \(0, 1\), got 1.0$"):
        apply_overrides(_Ranged(), {"ratio": 1}, where="protocol")
    with pytest.raises(UserError, match=r"^protocol.width must be >= 1, got 0$"):
        apply_overrides(_Ranged(), {"width": 0}, where="protocol")
    check_ranges(_Ranged(), where="protocol")
    with pytest.raises(UserError, match="protocol.ratio must be in"):
        check_ranges(_Ranged(ratio=0.0), where="protocol")
    with pytest.raises(ValueError):
        ranged(1, ge=0, gt=0)


def test_config_files_read_exponent_floats_as_numbers(tmp_path) -> None:
    from echobench.config import load_yaml

    path = tmp_path / "run.yaml"
    path.write_text("protocol:\n  lr: 1e-3\n  steps: 12\n  name: 1e\n")
    assert load_yaml(path) == {"protocol": {"lr": 0.001, "steps": 12, "name": "1e"}}
