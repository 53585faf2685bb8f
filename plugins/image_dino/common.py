"""Config validation and head sizing shared by the teacher–student plugins (image_dino, discover)."""

from __future__ import annotations

from echobench.errors import UserError


class InvalidConfig(UserError, ValueError):
    """A method config value out of range: a ``ValueError`` for code that builds configs, and a ``UserError`` so
    the CLI prints it as one line and exits 2."""


def require(condition: bool, field: str, value: object, rule: str) -> None:
    """Raise :class:`InvalidConfig` naming ``field`` unless ``condition`` holds."""
    if not condition:
        raise InvalidConfig(f"method.{field} must be {rule}, got {value!r}; set --set method.{field}=...")


def head_hidden_dim(configured: int | None, in_dim: int) -> int:
    """The DINO head's hidden width: as configured, else DINO's 2048 capped at 4× the encoder width (so a ViT-T's
    heads do not outweigh it)."""
    return configured if configured is not None else min(2048, 4 * in_dim)
