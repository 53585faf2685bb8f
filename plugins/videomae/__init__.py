"""VideoMAE: tube masking, normalised-pixel MSE on masked tokens, asymmetric encoder/decoder."""

from echobench_plugins.videomae.method import VideoMAE, VideoMAEConfig

__all__ = ["VideoMAE", "VideoMAEConfig"]
