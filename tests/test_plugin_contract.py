"""Every registered method plugin passes the Method contract (as timm tests every registered model): a new plugin
is tested by registering it."""

from __future__ import annotations

import pytest

from echobench import registry
from echobench.validate import CHECKS, validate

METHODS = sorted(info.name for info in registry.describe(registry.METHODS_GROUP))


@pytest.mark.parametrize("name", METHODS)
def test_registered_method_passes_validate_plugin(name: str) -> None:
    checks = validate(registry.load_method(name))
    failed = [c for c in checks if not c.passed]
    assert not failed, f"{name}: {failed[0].name}: {failed[0].detail}"
    assert [c.name for c in checks] == list(CHECKS)
