"""V-JEPA with the 3-D localisation auxiliary loss (Ellis et al.), and plain V-JEPA."""

from echobench_plugins.vjepa.method import VJEPA, VJEPAConfig, VJEPAPlain, VJEPAPlainConfig

__all__ = ["VJEPA", "VJEPAConfig", "VJEPAPlain", "VJEPAPlainConfig"]
