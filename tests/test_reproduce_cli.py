"""``echobench reproduce`` through the CLI: specs per seed paper, same-definition metrics, dry runs, and a whole-spec
smoke run on SynthEcho."""

from __future__ import annotations

import json
import sys

import pytest

from echobench.cli import main
from tests.cli_run import invoke

SEED_PAPERS = {"Temporal MAE", "EchoCardMAE", "EchoVisionFM", "V-JEPA + 3D localisation", "DISCOVER"}
#: The spec whose smoke run fits the suite's budget on 2 cores; every spec is listed and planned above.
SPECS = ["temporal-mae"]
TINY_ROWS = [
    *("--set", "pretrain.steps=2", "--set", "pretrain.batch_size=2", "--set", "method.frames=4"),
    *("--set", "method.size=32", "--set", "method.patch=8", "--set", "protocol.steps=2"),
    *("--set", "protocol.eval_every=1", "--set", "protocol.ci_resamples=20"),
]


def test_list_has_a_spec_for_every_seed_paper(monkeypatch, capsys) -> None:
    listed = json.loads(invoke(monkeypatch, capsys, ["reproduce", "list", "--json"]))
    assert SEED_PAPERS <= {entry["paper"] for entry in listed}
    assert all({"spec", "paper", "table", "rows"} <= set(entry) for entry in listed)


def test_dry_run_compares_each_published_metric_with_its_own_definition(monkeypatch, capsys) -> None:
    plans = {}
    for spec in ("discover", "temporal-mae"):
        plans[spec] = json.loads(invoke(monkeypatch, capsys, ["reproduce", spec, "--dry-run", "--json"]))
    f1 = {"F1", "F1_pct"}
    discover = [r for r in plans["discover"]["rows"] if r["published_metric"] in f1]
    temporal = [r for r in plans["temporal-mae"]["rows"] if r["published_metric"] in f1]
    assert discover and {r["metric"] for r in discover} == {"f1_macro"}
    assert temporal and {r["metric"] for r in temporal} == {"f1_negative"}
    keys = {"row", "method", "dataset", "protocol", "task", "published_metric", "metric", "published", "runnable"}
    assert all(keys | {"reason", "plan"} <= set(r) for r in plans["discover"]["rows"])
    # No dataset was given: every row is listed as not runnable with the reason, none is an error.
    assert all(not r["runnable"] and r["reason"] for r in plans["discover"]["rows"])
    assert any("not given" in r["reason"] for r in plans["discover"]["rows"])


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_runs_as_a_smoke_test_on_synthecho(monkeypatch, capsys, synth_root, tmp_path, spec) -> None:
    argv = ["reproduce", spec, "--dataset", "synthecho", "--data-root", str(synth_root), "--profile", "quick"]
    out = invoke(monkeypatch, capsys, [*argv, *TINY_ROWS, "--out", str(tmp_path), "--json"])
    table = json.loads(out)
    assert table["comparable"] is False
    ran = [r for r in table["rows"] if r.get("echobench") is not None]
    assert ran, f"no row of {spec} ran on SynthEcho"
    for row in ran:
        low, high = row["ci95"]
        assert row["inside_ci"] == (low <= row["published"] <= high)
    assert (tmp_path / f"{spec}.md").is_file() and (tmp_path / f"{spec}.json").is_file()
    assert "NOT COMPARABLE" in (tmp_path / f"{spec}.md").read_text()


def test_unknown_spec_is_one_line_with_a_suggestion_and_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["echobench", "reproduce", "discovr"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "did you mean 'discover'" in err and len(err.splitlines()) == 1
