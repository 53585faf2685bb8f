"""Config validation shared by the teacher–student plugins."""

from __future__ import annotations

from echobench.errors import UserError


class InvalidConfig(UserError, ValueError):
    """A method config value out of range: a ``ValueError`` for code that builds configs, and a ``UserError`` so
    the CLI prints it as one line and exits 2."""


def require(condition: bool, field: str, value: object, rule: str) -> None:
    """Raise :class:`InvalidConfig` naming ``field`` unless ``condition`` holds."""
    if not condition:
        raise InvalidConfig(f"method.{field} must be {rule}, got {value!r}; set --set method.{field}=...")
