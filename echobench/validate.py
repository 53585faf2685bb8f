"""``echobench validate-plugin``: run a method on tiny synthetic clips and check the Method contract."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from echobench import checkpoint as ckpt
from echobench.api import ClipBatch, ClipSpec, Embedding, LossOutput, Method, MethodConfig
from echobench.config import apply_overrides

TINY = {"model": "vit_tiny", "frames": 4, "stride": 1, "size": 32, "patch": 8, "tubelet": 2}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def tiny_batch(spec: ClipSpec, batch_size: int, in_chans: int, seed: int = 0) -> ClipBatch:
    generator = torch.Generator().manual_seed(seed)
    views = [
        torch.randn(batch_size, in_chans, spec.frames, spec.size, spec.size, generator=generator)
        for _ in range(spec.clips_per_video)
    ]
    frames = torch.arange(spec.frames) * spec.stride
    return ClipBatch(
        views=views,
        frame_indices=frames.expand(batch_size, spec.clips_per_video, spec.frames).clone(),
        fps=torch.full((batch_size,), 50.0),
        video_ids=[f"tiny{i}" for i in range(batch_size)],
        ed_es=torch.tensor([[0, spec.span - 1]] * batch_size) if spec.needs_ed_es else None,
    )


def validate(method_cls: type[Method], overrides: dict[str, Any] | None = None, batch_size: int = 2) -> list[Check]:
    """Every contract check, in order; later checks are skipped once construction fails."""
    checks: list[Check] = []

    def check(name: str, fn: Callable[[], str]) -> bool:
        try:
            checks.append(Check(name, True, fn()))
            return True
        except Exception as exc:  # any failure of the plugin is a finding, not a crash of the validator
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
            return False

    state: dict[str, Any] = {}

    def config() -> str:
        if not (dataclasses.is_dataclass(method_cls.Config) and issubclass(method_cls.Config, MethodConfig)):
            raise TypeError("Config must be a dataclass deriving from echobench.api.MethodConfig")
        fields = {f.name for f in dataclasses.fields(method_cls.Config)}
        tiny = {k: v for k, v in TINY.items() if k in fields}
        state["config"] = apply_overrides(
            apply_overrides(method_cls.Config(), tiny, where="tiny"), overrides or {}, where="method"
        )
        return f"{method_cls.__name__}.Config with {len(fields)} fields"

    def construct() -> str:
        torch.manual_seed(0)
        method = method_cls(state["config"])
        if not getattr(method_cls, "name", None):
            raise TypeError("the class must set `name`")
        encoder = getattr(method, "encoder", None)
        if encoder is None or not isinstance(getattr(encoder, "blocks", None), torch.nn.ModuleList):
            raise TypeError("`encoder` must be an nn.Module with a `blocks` ModuleList")
        state["method"] = method
        return f"{sum(p.numel() for p in method.parameters()):,} parameters, {len(encoder.blocks)} encoder blocks"

    def step() -> str:
        method: Method = state["method"]
        if not method.trainable:
            return "not trainable (FrozenMethod): skipped"
        spec = method.clip_spec()
        method.train()
        out = method.pretrain_step(tiny_batch(spec, batch_size, state["config"].in_chans))
        if not isinstance(out, LossOutput) or not torch.is_tensor(out.loss) or out.loss.ndim != 0:
            raise TypeError(f"pretrain_step must return LossOutput with a scalar tensor loss, got {out!r}")
        if not torch.isfinite(out.loss):
            raise ValueError(f"loss is not finite: {float(out.loss.detach())}")
        out.loss.backward()
        reached = [n for n, p in method.encoder.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        if not reached:
            raise ValueError("no gradient reaches any encoder parameter")
        method.after_step(1, 10)
        terms = ", ".join(f"{k}={float(v):.3g}" for k, v in out.terms.items())
        return f"loss={float(out.loss.detach()):.4f} {terms}; gradients reach {len(reached)} encoder tensors"

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
        if not torch.equal(first.pooled, second.pooled):
            raise ValueError("encode is not deterministic in eval mode")
        state["clips"], state["pooled"] = clips, first.pooled
        return f"pooled {tuple(first.pooled.shape)}, tokens {tuple(first.tokens.shape)}, deterministic"

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

    for name, fn in [
        ("config", config),
        ("construct", construct),
        ("pretrain_step", step),
        ("encode", encode),
        ("checkpoint", round_trip),
    ]:
        if not check(name, fn):
            break
    return checks
