"""DISCOVER: video self-distillation, masked image self-distillation and semantic cluster distillation."""

from echobench_plugins.discover.method import Discover, DiscoverConfig

__all__ = ["Discover", "DiscoverConfig"]
