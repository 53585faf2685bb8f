"""``torchrun tests/ddp_toy_cli.py pretrain --method toy_ema_ddp …``: the echobench CLI with the test-only toy EMA
method registered, for distributed tests of a method with an EMA teacher and a DINO centre."""

from toy_methods import ToyEMADistributed

from echobench import registry
from echobench.cli import main

_installed = registry.load_method


def load_method(name: str) -> type:
    return ToyEMADistributed if name == ToyEMADistributed.name else _installed(name)


registry.load_method = load_method

if __name__ == "__main__":
    main()
