"""random_init: an untrained encoder, the floor every method must beat."""

from echobench_plugins.random_init.method import RandomInit, RandomInitConfig

__all__ = ["RandomInit", "RandomInitConfig"]
