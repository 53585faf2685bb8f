"""Checks of the downstream contract (:class:`echobench.api.VideoEncoder`) shared by ``validate-plugin`` and the
protocols that train through an encoder, so a plugin that breaks it gets one line naming the rule and the fix
instead of an AttributeError from inside the harness."""

from __future__ import annotations

from typing import Any

from torch import nn

from echobench.api import VideoEncoder
from echobench.errors import UserError

_RULES: tuple[tuple[str, str], ...] = (
    ("blocks", "an nn.ModuleList of its transformer blocks (partial fine-tuning unfreezes the last k)"),
    ("embed_dim", "the feature width as an int"),
    ("grid", "the token grid (T', H', W')"),
    ("forward_features", "forward_features(clips) -> Embedding, differentiable (fine-tuning trains through it)"),
    ("no_weight_decay", "no_weight_decay() -> set of parameter names (may be empty)"),
    ("group_matcher", "group_matcher(coarse=False) -> timm-style layer groups for layer-wise lr decay"),
)


def encoder_problems(encoder: Any) -> list[str]:
    """What ``encoder`` lacks of the contract, as ``rule: fix`` strings (empty when it conforms)."""
    if not isinstance(encoder, nn.Module):
        return [f"encoder must be an nn.Module holding every parameter it uses, got {type(encoder).__name__}"]
    problems = [f"encoder has no `{name}`: add {fix}" for name, fix in _RULES if not hasattr(encoder, name)]
    if not problems and not isinstance(encoder.blocks, nn.ModuleList):
        problems.append("encoder.blocks must be an nn.ModuleList")
    if not problems and not isinstance(encoder, VideoEncoder):
        problems.append("encoder does not satisfy echobench.api.VideoEncoder")
    return problems


def require_encoder(method: Any) -> VideoEncoder:
    """The method's downstream encoder, or a one-line :class:`UserError` naming the plugin and the broken rule."""
    encoder = getattr(method, "encoder", None)
    problems = encoder_problems(encoder)
    if problems:
        raise UserError(f"method plugin {getattr(method, 'name', '?')!r} breaks the downstream contract: {problems[0]}")
    return encoder
