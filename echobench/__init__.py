"""echobench: a benchmarking harness for self-supervised learning on echocardiography videos."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("echobench")
except PackageNotFoundError:
    __version__ = "0.0.0+unknown"
