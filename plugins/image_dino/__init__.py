"""image_dino: DINO on single frames, clip embedding = mean of frame CLS tokens (the RAD-DINO stand-in)."""

from echobench_plugins.image_dino.method import ImageDINO, ImageDINOConfig

__all__ = ["ImageDINO", "ImageDINOConfig"]
