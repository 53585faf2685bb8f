"""The supervised ceiling: the shared encoder trained end to end on one task's training-split labels."""

from echobench_plugins.supervised.method import Supervised, SupervisedConfig

__all__ = ["Supervised", "SupervisedConfig"]
