"""``echobench new-plugin``: the generated package declares its entry point, installs off the network, and its method
passes the Method contract as generated; bad names and existing folders are refused with one line."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from echobench.api import Method
from echobench.cli import main
from echobench.validate import CHECKS, validate

NAME = "scaffolded_probe"


def new_plugin(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["echobench", "new-plugin", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


@pytest.fixture
def generated(monkeypatch, capsys, tmp_path) -> Path:
    folder = tmp_path / "plugin"
    code, err = new_plugin(monkeypatch, capsys, NAME, "--dir", str(folder))
    assert code == 0, err
    yield folder
    for module in [m for m in sys.modules if m == NAME or m.startswith(f"{NAME}.") or m == f"test_{NAME}"]:
        del sys.modules[module]


def test_generated_package_passes_the_contract(generated: Path, monkeypatch) -> None:
    pyproject = tomllib.loads((generated / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["echobench.methods"] == {NAME: f"{NAME}:ScaffoldedProbe"}
    assert pyproject["tool"]["setuptools"]["packages"] == [NAME]
    assert (generated / NAME / "losses.py").is_file()
    monkeypatch.syspath_prepend(str(generated))
    monkeypatch.syspath_prepend(str(generated / "tests"))
    module = importlib.import_module(NAME)
    checks = validate(module.ScaffoldedProbe)
    assert [c.name for c in checks] == list(CHECKS)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    # The generated test file's own hand-computed loss check runs and passes.
    importlib.import_module(f"test_{NAME}").test_feature_regression_loss_equals_a_hand_computation()


def test_generated_package_installs_off_the_network(generated: Path, tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    done = subprocess.run([*command, str(site), str(generated)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (entry,) = [
        ep
        for dist in importlib.metadata.distributions(path=[str(site)])
        for ep in dist.entry_points
        if ep.group == "echobench.methods"
    ]
    assert entry.name == NAME
    monkeypatch.syspath_prepend(str(site))
    method_cls = entry.load()
    assert issubclass(method_cls, Method) and method_cls.name == NAME
    assert Path(sys.modules[NAME].__file__).is_relative_to(site)


@pytest.mark.parametrize("name", ["my-method", "3d_mae", "class", "mé"])
def test_invalid_names_are_refused_with_one_line(monkeypatch, capsys, tmp_path, name: str) -> None:
    code, err = new_plugin(monkeypatch, capsys, name, "--dir", str(tmp_path / "out"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and repr(name) in err and "identifier" in err
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_refused_and_left_alone(monkeypatch, capsys, tmp_path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    code, err = new_plugin(monkeypatch, capsys, NAME, "--dir", str(folder))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "already exists" in err
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
