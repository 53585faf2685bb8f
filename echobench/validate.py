"""``echobench validate-plugin``: run a method on tiny synthetic clips and check the Method contract.

Each check states one rule; a failure names the rule and what to fix, so a method author learns the contract from
its output. The checks run in order and stop at the first failure, since later ones build on earlier ones.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from echobench import checkpoint as ckpt
from echobench.api import ClipBatch, ClipSpec, Embedding, LossOutput, Method, MethodConfig, SampleMeta, TrainState
from echobench.config import PretrainConfig, apply_overrides
from echobench.contract import encoder_problems
from echobench.data.tasks import get_task
from echobench.pretrain import method_loop
from echobench.protocols.finetune import layer_lr_scale
from echobench.train import complete_groups, gather_no_weight_decay, param_groups

TINY = {"model": "vit_tiny", "frames": 4, "stride": 1, "size": 32, "patch": 8, "tubelet": 2}
CHECKS = (
    "config",
    "construct",
    "no_weight_decay",
    "pretrain_step",
    "resume",
    "encode",
    "checkpoint",
    "finetune",
)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def tiny_batch(
    spec: ClipSpec, batch_size: int, in_chans: int, seed: int = 0, method: Method | None = None
) -> ClipBatch:
    """Random clips shaped as the loader would hand them for ``spec`` (views, frame indices, ED/ES, labels), with
    ``method.prepare_sample`` run on matching uint8 frames when the method overrides it."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, spec.clips_per_video, spec.frames, spec.size, spec.size)
    raw = torch.randint(0, 256, shape, generator=generator).to(torch.uint8)
    normalised = (raw.float() / 255 - 0.5) / 0.25
    views = [normalised[:, v, None].expand(-1, in_chans, -1, -1, -1).contiguous() for v in range(spec.clips_per_video)]
    offsets = torch.from_numpy(spec.offsets(50.0))
    frame_indices = (offsets + torch.arange(spec.clips_per_video)[:, None]).expand(batch_size, -1, -1).clone()
    labels = {}
    for name in spec.tasks:
        task = get_task(name)
        if task.is_classification:
            labels[name] = torch.randint(0, len(task.classes), (batch_size,), generator=generator)
        else:
            labels[name] = torch.rand(batch_size, generator=generator) * 100
    extras: dict[str, torch.Tensor] = {}
    if method is not None and type(method).prepare_sample is not Method.prepare_sample:
        samples = [
            method.prepare_sample(
                raw[i], frame_indices[i].numpy(), SampleMeta(f"tiny{i}", 50.0, (0, spec.frames - 1), seed * 1000 + i)
            )
            for i in range(batch_size)
        ]
        extras = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in samples[0]}
    return ClipBatch(
        views=views,
        frame_indices=frame_indices,
        fps=torch.full((batch_size,), 50.0),
        video_ids=[f"tiny{i}" for i in range(batch_size)],
        ed_es=torch.tensor([[0, spec.frames - 1]] * batch_size) if spec.needs_ed_es else None,
        labels=labels,
        extras=extras,
        norm=(0.5, 0.25),
    )


def validate(method_cls: type[Method], overrides: dict[str, Any] | None = None, batch_size: int = 2) -> list[Check]:
    """Every contract check, in order; later checks are skipped once one fails."""
    checks: list[Check] = []
    state: dict[str, Any] = {}

    def build() -> Method:
        torch.manual_seed(0)
        return method_cls(state["config"])

    def config() -> str:
        if not (dataclasses.is_dataclass(method_cls.Config) and issubclass(method_cls.Config, MethodConfig)):
            raise TypeError("Config must be a dataclass deriving from echobench.api.MethodConfig")
        fields = {f.name for f in dataclasses.fields(method_cls.Config)}
        tiny = {k: v for k, v in TINY.items() if k in fields}
        # Every profile's own settings must name real fields; the check runs at the plugin's quick settings (its
        # cheapest structure) shrunk to the tiny geometry.
        for profile, sections in method_cls.profile_overrides.items():
            apply_overrides(method_cls.Config(), sections.get("method", {}), where=f"profile {profile} method")
            apply_overrides(PretrainConfig(), sections.get("pretrain", {}), where=f"profile {profile} pretrain")
        quick = method_cls.profile_overrides.get("quick", {}).get("method", {})
        base = apply_overrides(method_cls.Config(), quick, where="profile quick method")
        state["config"] = apply_overrides(apply_overrides(base, tiny, where="tiny"), overrides or {}, where="method")
        return f"{method_cls.__name__}.Config with {len(fields)} fields"

    def construct() -> str:
        if not getattr(method_cls, "name", None):
            raise TypeError("the class must set `name`")
        method = build()
        problems = encoder_problems(getattr(method, "encoder", None))
        if problems:
            raise TypeError(problems[0])
        state["method"] = method
        blocks = len(method.encoder.blocks)
        return f"{sum(p.numel() for p in method.parameters()):,} parameters, {blocks} encoder blocks"

    def no_weight_decay() -> str:
        method: Method = state["method"]
        names = gather_no_weight_decay(method)
        params = dict(method.named_parameters())
        stray = sorted(n for n in names if n not in params)
        if stray:
            raise ValueError(
                f"no_weight_decay() names {stray[0]!r}, which is no parameter of the method; "
                "names are relative to the module that declares them"
            )
        custom = method.param_groups()
        if custom is not None:
            complete_groups(method, custom, f"method {method.name!r}")
        return f"{len(names)} parameters without weight decay" + (", custom groups" if custom is not None else "")

    def step() -> str:
        method: Method = state["method"]
        if not method.trainable:
            return "not trainable (FrozenMethod): skipped"
        spec = method.clip_spec()
        if not isinstance(spec, ClipSpec):
            raise TypeError(f"clip_spec() must return echobench.api.ClipSpec, got {type(spec).__name__}")
        method.train()
        batch = tiny_batch(spec, batch_size, state["config"].in_chans, method=method)
        out = method.pretrain_step(batch, TrainState.at(0, 5, 10))
        if not isinstance(out, LossOutput) or not torch.is_tensor(out.loss) or out.loss.ndim != 0:
            raise TypeError(f"pretrain_step must return LossOutput with a scalar tensor loss, got {out!r}")
        if not torch.isfinite(out.loss):
            raise ValueError(f"the loss is {float(out.loss.detach())} (not finite) on {spec.clips_per_video} view(s)")
        out.loss.backward()
        reached = [n for n, p in method.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        if not reached:
            raise ValueError("no gradient reaches any trainable parameter; the loss must depend on trainable modules")
        method.zero_grad(set_to_none=True)
        terms = ", ".join(f"{k}={float(v):.3g}" for k, v in out.terms.items())
        return f"loss={float(out.loss.detach()):.4f} {terms}; gradients reach {len(reached)} tensors"

    def resume() -> str:
        method: Method = state["method"]
        if not method.trainable:
            return "not trainable (FrozenMethod): skipped"
        with tempfile.TemporaryDirectory() as tmp:
            straight = _train(build(), Path(tmp) / "straight", batch_size, state["config"].in_chans, None)
            _train(build(), Path(tmp) / "resumed", batch_size, state["config"].in_chans, 2)
            resumed = _train(build(), Path(tmp) / "resumed", batch_size, state["config"].in_chans, None)
        for name, tensor in straight.items():
            if not torch.equal(tensor, resumed[name]):
                raise ValueError(
                    f"3 steps with a resume after step 2 end with a different {name!r} than 3 uninterrupted steps; "
                    "keep all training state (EMA teachers, centres) in parameters or persistent buffers and draw "
                    "randomness from the global torch RNG the harness seeds per step"
                )
        return f"3 steps with a resume after 2 equal 3 uninterrupted steps ({len(straight)} tensors)"

    def encode() -> str:
        method: Method = state["method"]
        spec = method.eval_clip_spec()
        clips = tiny_batch(spec, batch_size, state["config"].in_chans, seed=1).clips
        method.eval()
        with torch.inference_mode():
            first, second = method.encode(clips), method.encode(clips)
        if not isinstance(first, Embedding):
            raise TypeError(f"encode must return echobench.api.Embedding, got {type(first).__name__}")
        dim = method.encoder.embed_dim
        if tuple(first.pooled.shape) != (batch_size, dim):
            raise ValueError(f"pooled shape {tuple(first.pooled.shape)}, expected ({batch_size}, {dim})")
        if first.tokens.ndim != 5 or first.tokens.shape[0] != batch_size or first.tokens.shape[-1] != dim:
            raise ValueError(f"tokens shape {tuple(first.tokens.shape)}, expected ({batch_size}, T', H', W', {dim})")
        for part in ("pooled", "tokens"):
            values = getattr(first, part)
            if not bool(torch.isfinite(values).all()):
                bad = int((~torch.isfinite(values)).sum())
                raise ValueError(f"encode returns {bad} NaN/inf values in {part}; check the encoder for overflow")
        if not (torch.equal(first.pooled, second.pooled) and torch.equal(first.tokens, second.tokens)):
            raise ValueError("encode is not deterministic in eval mode (dropout or random masks left on?)")
        state["clips"], state["pooled"] = clips, first.pooled
        return f"pooled {tuple(first.pooled.shape)}, tokens {tuple(first.tokens.shape)}, finite, deterministic"

    def round_trip() -> str:
        method: Method = state["method"]
        with tempfile.TemporaryDirectory() as tmp:
            meta = ckpt.CheckpointMeta(method.name, method.version, {}, 0, 0, True, {})
            ckpt.save_model(Path(tmp), method, meta)
            torch.manual_seed(123)
            fresh = method_cls(state["config"])
            ckpt.load_model(Path(tmp), fresh, method=method.name)
        fresh.eval()
        with torch.inference_mode():
            again = fresh.encode(state["clips"]).pooled
        if not torch.allclose(again, state["pooled"]):
            raise ValueError("a reloaded checkpoint encodes differently: some state is not in state_dict")
        return "safetensors save/load reproduces encode"

    def finetune() -> str:
        method: Method = state["method"]
        encoder = copy.deepcopy(method.encoder)
        encoder.requires_grad_(True)
        encoder.train()
        features = encoder.forward_features(state["clips"])
        if not isinstance(features, Embedding):
            raise TypeError(f"encoder.forward_features must return Embedding, got {type(features).__name__}")
        if not features.pooled.requires_grad:
            raise ValueError(
                "encoder.forward_features returns features without gradient (no_grad or detach inside); "
                "fine-tuning would train nothing"
            )
        loss = features.pooled.float().square().mean() + features.tokens.float().square().mean()
        loss.backward()
        last = encoder.blocks[-1]
        if not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in last.parameters()):
            raise ValueError("no gradient reaches the encoder's last block through forward_features")
        stray = sorted(set(encoder.no_weight_decay()) - dict(encoder.named_parameters()).keys())
        if stray:
            raise ValueError(f"encoder.no_weight_decay() names {stray[0]!r}, which is no encoder parameter")
        scale = layer_lr_scale(encoder, 0.75, 1.0)
        groups = param_groups(encoder, set(), lambda name: scale(f"encoder.{name}"))
        before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
        optimizer = torch.optim.AdamW(groups, lr=1e-3)
        optimizer.step()
        moved = sum(not torch.equal(before[n], p) for n, p in encoder.named_parameters())
        return f"forward_features differentiable; one AdamW step over {len(groups)} groups moved {moved} tensors"

    steps: dict[str, Callable[[], str]] = {
        "config": config,
        "construct": construct,
        "no_weight_decay": no_weight_decay,
        "pretrain_step": step,
        "resume": resume,
        "encode": encode,
        "checkpoint": round_trip,
        "finetune": finetune,
    }
    for name in CHECKS:
        try:
            checks.append(Check(name, True, steps[name]()))
        except Exception as exc:  # any failure of the plugin is a finding, not a crash of the validator
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            checks.append(Check(name, False, f"{type(exc).__name__}: {message}"))
            break
    return checks


def _train(method: Method, folder: Path, batch_size: int, in_chans: int, stop_after: int | None) -> dict[str, Any]:
    """Three tiny pretraining steps through the harness's loop (CPU, fp32), optionally stopping after some."""
    spec = method.clip_spec()
    config = PretrainConfig(
        steps=3,
        batch_size=batch_size,
        lr=1e-3,
        lr_scaling="none",
        warmup_fraction=0.34,
        weight_decay=0.04,
        weight_decay_end=0.4,
        checkpoint_every=1,
        amp="off",
        device="cpu",
        seed=0,
    )

    def batches(start: int) -> Iterator[ClipBatch]:
        for step in range(start, config.steps):
            yield tiny_batch(spec, batch_size, in_chans, seed=100 + step, method=method)

    def meta(step: int, complete: bool) -> ckpt.CheckpointMeta:
        return ckpt.CheckpointMeta(method.name, method.version, {}, step, config.steps, complete, {})

    loop = method_loop(
        method, config, folder, meta, steps_per_epoch=2, description=f"validate {method.name}", stop_after=stop_after
    )
    loop.run(batches)
    return {k: v.detach().clone() for k, v in method.state_dict().items()}
