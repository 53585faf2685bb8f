"""MGMAE: VideoMAE with masks warped along optical flow (Farneback substitute for RAFT)."""

from echobench_plugins.mgmae.method import MGMAE, MGMAEConfig

__all__ = ["MGMAE", "MGMAEConfig"]
