"""Temporal MAE (paper 000): frame-wise masking, raw-pixel reconstruction and a temporal contrastive loss."""

from echobench_plugins.temporal_mae.method import TemporalMAE, TemporalMAEConfig

__all__ = ["TemporalMAE", "TemporalMAEConfig"]
