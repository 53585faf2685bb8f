"""SIGMA: VideoMAE with Sinkhorn cluster-assignment targets of projected pixel patches."""

from echobench_plugins.sigma.method import Sigma, SigmaConfig

__all__ = ["Sigma", "SigmaConfig"]
