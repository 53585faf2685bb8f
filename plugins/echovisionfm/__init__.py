"""EchoVisionFM (paper 002): Echo-VideoMAE pretraining; STFF-Net is the ``stff`` / ``finetune-stff`` protocol."""

from echobench_plugins.echovisionfm.method import EchoVisionFM, EchoVisionFMConfig, random_flips

__all__ = ["EchoVisionFM", "EchoVisionFMConfig", "random_flips"]
