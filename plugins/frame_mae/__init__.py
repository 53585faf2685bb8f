"""Frame-based MAE (paper 000's baseline): Temporal MAE's ViT and reconstruction on single frames."""

from echobench_plugins.frame_mae.method import FrameMAE, FrameMAEConfig, FrameViT

__all__ = ["FrameMAE", "FrameMAEConfig", "FrameViT"]
