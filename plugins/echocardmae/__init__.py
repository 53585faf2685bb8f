"""EchoCardMAE (paper 001): key-area masking, background token, denoised targets, temporal-invariant alignment."""

from echobench_plugins.echocardmae.method import EchoCardMAE, EchoCardMAEConfig

__all__ = ["EchoCardMAE", "EchoCardMAEConfig"]
