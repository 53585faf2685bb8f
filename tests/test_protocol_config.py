"""Protocol settings take the same typed path as every other ``--set``: a wrongly typed value of any field of any
protocol fails while resolving, before any data is read or any model trained, with one line and exit code 2."""

from __future__ import annotations

import dataclasses
import sys
import typing

import pytest

from echobench import registry
from echobench.cli import main
from echobench.errors import UserError
from echobench.protocols import get_family
from echobench.runner import resolve


def _config_fields() -> list[tuple[str, str, typing.Any]]:
    cases = []
    for name in sorted(registry.available_protocols()):
        spec = registry.load_protocol(name)
        config = get_family(spec.family).config_from_dict(spec.settings.get("config", {}))
        hints = typing.get_type_hints(type(config))
        cases += [(name, f.name, hints[f.name]) for f in dataclasses.fields(config)]
    return cases


def _wrong_value(annotation: typing.Any) -> str:
    """A YAML value of the wrong type for ``annotation``: a list where a mapping is expected, else a mapping."""
    return "[1, 2]" if typing.get_origin(annotation) is dict else "{wrong: type}"


@pytest.mark.parametrize(("protocol", "field", "annotation"), _config_fields())
def test_every_protocol_field_with_a_wrong_type_fails_while_resolving(protocol, field, annotation) -> None:
    with pytest.raises(UserError, match=field):
        resolve("random_init", protocol, sets=[f"protocol.{field}={_wrong_value(annotation)}"])


@pytest.mark.parametrize(
    ("protocol", "setting"),
    [
        ("attentive", "protocol.weight_decay=abc"),
        ("finetune-partial", "protocol.weight_decay=abc"),
        ("finetune-partial", "protocol.lr=abc"),
        ("knn", "protocol.temperature=hot"),
        ("linear", "protocol.weight_decays=[abc]"),
    ],
)
def test_wrong_type_is_one_line_and_exit_2_before_any_work(monkeypatch, capsys, isolated_home, protocol, setting):
    monkeypatch.setattr(
        sys, "argv", ["echobench", "run", "--method", "videomae", "--protocol", protocol, "-s", setting]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2
    assert len(err.splitlines()) == 1 and setting.split("=")[0] in err and "Traceback" not in err
    assert not isolated_home.exists() or not any(isolated_home.iterdir())


def test_quick_profile_sets_the_fine_tuning_recipe_between_the_protocol_and_set() -> None:
    quick = resolve("random_init", "finetune-full").protocol_config
    assert (quick.lr, quick.layer_decay, quick.head_lr_scale) == (1e-3, 1.0, 10.0)
    paper = resolve("random_init", "finetune-full", profile="paper").protocol_config
    assert (paper.lr, paper.layer_decay) == (1e-4, 0.75)
    chosen = resolve("random_init", "finetune-partial", sets=["protocol.lr=3e-4"]).protocol_config
    assert (chosen.lr, chosen.layer_decay, chosen.unfreeze) == (3e-4, 1.0, 3)
    paper_knn = resolve("random_init", "knn", profile="paper").protocol_config
    assert resolve("random_init", "knn").protocol_config == paper_knn
