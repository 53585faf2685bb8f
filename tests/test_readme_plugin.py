"""The plugin example in the README must satisfy the Method contract as pasted."""

import re
import types
from pathlib import Path

from echobench.validate import CHECKS, validate

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_plugin_module() -> types.ModuleType:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    source = next(b for b in blocks if "class MyMethod(Method)" in b)
    module = types.ModuleType("my_echo_method")
    exec(compile(source, "README.md", "exec"), module.__dict__)
    return module


def test_readme_plugin_passes_validate_plugin():
    module = readme_plugin_module()
    checks = validate(module.MyMethod)
    assert [c.name for c in checks] == list(CHECKS)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_validator_catches_a_broken_plugin():
    module = readme_plugin_module()

    class NoGradient(module.MyMethod):
        def pretrain_step(self, batch, state):
            out = super().pretrain_step(batch, state)
            return type(out)(loss=out.loss.detach().requires_grad_(), terms=out.terms)

    checks = validate(NoGradient)
    assert checks[-1].name == "pretrain_step" and not checks[-1].passed
    assert "no gradient reaches" in checks[-1].detail
