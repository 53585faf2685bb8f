"""Config checks the masked-modelling plugins share, raised while the configuration is resolved (before any data
is decoded) as one-line :class:`UserError`\\ s naming the ``method.*`` field to fix."""

from __future__ import annotations

from echobench.api import MethodConfig
from echobench.errors import UserError


def check_open_unit(field: str, value: float) -> None:
    """A ratio that must lie strictly between 0 and 1 (mask ratios)."""
    if not 0.0 < value < 1.0:
        raise UserError(f"method.{field} must be in (0, 1), got {value}; e.g. --set method.{field}=0.75")


def check_clip_geometry(config: MethodConfig) -> None:
    """Clips that tile into whole tubelets and frames that tile into whole patches."""
    if config.frames < config.tubelet:
        raise UserError(
            f"method.frames ({config.frames}) is shorter than one tubelet (method.tubelet = {config.tubelet}); "
            "use at least one tubelet of frames"
        )
    if config.frames % config.tubelet:
        raise UserError(
            f"method.frames ({config.frames}) is not a multiple of method.tubelet ({config.tubelet}); change one"
        )
    if config.patch < 1 or config.size % config.patch:
        raise UserError(
            f"method.size ({config.size}) is not divisible by method.patch ({config.patch}); "
            "choose a size that is a multiple of the patch"
        )
