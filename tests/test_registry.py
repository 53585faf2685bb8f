import sys
import textwrap

import pytest

from echobench import registry
from echobench.errors import UserError


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A third-party distribution, installed the way pip would: a module plus a .dist-info with entry points."""
    (tmp_path / "thirdparty_method.py").write_text(
        textwrap.dedent(
            """
            from echobench_plugins.random_init import RandomInit

            class ThirdParty(RandomInit):
                name = "thirdparty"
                version = "9.9"
            """
        )
    )
    (tmp_path / "broken_method.py").write_text("raise ImportError('missing dependency xyz')\n")
    info = tmp_path / "thirdparty_pkg-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-pkg\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        "[echobench.methods]\nthirdparty = thirdparty_method:ThirdParty\nbroken = broken_method:Broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("thirdparty_method", "broken_method"):
        sys.modules.pop(name, None)


def test_discovers_entry_point_of_installed_distribution(installed_plugin):
    cls = registry.load_method("thirdparty")
    assert cls.name == "thirdparty"
    with pytest.warns(UserWarning, match="broken"):
        infos = {i.name: i for i in registry.describe(registry.METHODS_GROUP)}
    assert infos["thirdparty"].package == "thirdparty-pkg"
    assert infos["thirdparty"].version == "9.9"
    assert infos["broken"].error is not None and "xyz" in infos["broken"].error
    assert infos["videomae"].error is None


def test_broken_plugin_is_a_named_error(installed_plugin):
    with pytest.raises(UserError, match=r"'broken' \(thirdparty-pkg 1.2.3.*failed to import.*xyz"):
        registry.load_method("broken")


def test_unknown_names_suggest():
    with pytest.raises(UserError, match="did you mean 'videomae'"):
        registry.load_method("videomea")
    with pytest.raises(UserError, match="did you mean 'knn'"):
        registry.load_protocol("kn")
    with pytest.raises(UserError, match="did you mean 'synthecho'"):
        registry.load_dataset("synthecko")


def test_builtin_protocol_spec_and_user_override(tmp_path, monkeypatch):
    spec = registry.load_protocol("knn")
    assert spec.family == "knn" and spec.task == "ef_anomaly"
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "knn.yaml").write_text("name: knn\nfamily: knn\nversion: 7\ntask: ef\n")
    monkeypatch.chdir(tmp_path)
    assert registry.load_protocol("knn").version == 7
    (tmp_path / "bad.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="lacks required key"):
        registry.load_protocol(str(tmp_path / "bad.yaml"))


def test_protocol_families_are_entry_points() -> None:
    from importlib import metadata

    from echobench import registry
    from echobench.protocols import Family, get_family

    registered = {ep.name for ep in metadata.entry_points(group=registry.PROTOCOLS_GROUP)}
    used = {registry.load_protocol(str(path)).family for path in registry.available_protocols().values()}
    assert used <= registered
    assert all(isinstance(get_family(name), Family) for name in registered)
    with pytest.raises(UserError, match="unknown protocol 'knnn' \\(did you mean 'knn'\\?\\)"):
        get_family("knnn")
