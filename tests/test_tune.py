"""``echobench tune``: search spaces, pinned studies, worker processes sharing one study (journal file and a real
PostgreSQL server), pruning from intermediate validation values, bad input, and the best config fed back to run."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import optuna
import pytest
import yaml
from tune_workers import SEARCH, PrivatePostgres, postgres_bin, start_worker, tune_argv

from echobench.api import MethodConfig
from echobench.cli import main
from echobench.config import config_file_sets, parse_set
from echobench.errors import UserError
from echobench.train import validation_listener
from echobench.tune import (
    StudySpec,
    declared_space,
    open_storage,
    open_study,
    parse_range,
    pruning_reports,
    search_space,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["echobench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


@dataclass
class SearchedConfig(MethodConfig):
    mask_ratio: float = field(default=0.9, metadata={"search": {"low": 0.5, "high": 0.95}})
    depth: int = 4
    search_space: ClassVar[dict[str, Any]] = {
        "depth": {"low": 2, "high": 8, "step": 2},
        "pretrain.lr": {"low": 1e-5, "high": 1e-3, "log": True},
        "model": ["vit_tiny", "vit_small"],
    }


def test_declared_space_reads_metadata_and_classvar_and_the_file_overrides_it(tmp_path):
    space = declared_space(SearchedConfig)
    assert sorted(space) == ["method.depth", "method.mask_ratio", "method.model", "pretrain.lr"]
    assert space["method.depth"].is_int and space["method.depth"].step == 2
    assert not space["method.mask_ratio"].is_int and space["pretrain.lr"].log
    assert space["method.model"].choices == ("vit_tiny", "vit_small")
    search = tmp_path / "search.yaml"
    search.write_text("method:\n  mask_ratio: {low: 0.7, high: 0.8}\n  model: null\nprotocol.k: [1, 5]\n")
    merged = search_space(SearchedConfig, search)
    assert sorted(merged) == ["method.depth", "method.mask_ratio", "pretrain.lr", "protocol.k"]
    assert (merged["method.mask_ratio"].low, merged["method.mask_ratio"].high) == (0.7, 0.8)
    assert merged["protocol.k"].choices == (1, 5)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"low": 0.9, "high": 0.5}, "empty search range [0.9, 0.5]"),
        ({"low": 0.5, "high": 0.5}, "empty search range"),
        ({"choices": []}, "empty choice list"),
        ({"low": 0, "high": 1, "log": True}, "log scale"),
        ({"low": "a", "high": 1}, "numeric low and high"),
        ({"low": 0, "high": 1, "stp": 1}, "unknown key 'stp'"),
    ],
)
def test_bad_ranges_are_one_line_errors(spec, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_range("method.mask_ratio", spec, "search.yaml")


def spec_for(method: str = "random_init", protocol: str = "knn", seed: int = 0) -> StudySpec:
    return StudySpec(
        method=method,
        protocol=protocol,
        dataset="synthecho",
        data_root=None,
        task="ef",
        profile="quick",
        overrides=(),
        space={"protocol.temperature": {"low": 0.01, "high": 0.5, "log": True, "step": None}},
        metric="mae",
        direction="minimize",
        seed=seed,
    )


@pytest.mark.parametrize(
    "other, message",
    [
        (spec_for(method="videomae"), "created for method 'random_init', this command has 'videomae'"),
        (spec_for(protocol="linear"), "created for protocol 'knn', this command has 'linear'"),
        (spec_for(seed=1), "created for seed 0, this command has 1"),
    ],
)
def test_a_study_refuses_another_method_protocol_or_seed_and_stays_untouched(tmp_path, other, message):
    storage = open_storage(str(tmp_path / "journal"))
    open_study(storage, "s", spec_for())
    before = (tmp_path / "journal").read_bytes()
    with pytest.raises(UserError, match=message):
        open_study(storage, "s", other)
    assert (tmp_path / "journal").read_bytes() == before


def test_pruner_stops_a_trial_whose_intermediate_validation_is_worse_than_the_median(tmp_path):
    study = open_study(open_storage(str(tmp_path / "journal")), "s", spec_for())
    for value in (1.0, 2.0):
        trial = study.ask()
        with pruning_reports(trial, higher_is_better=False):
            # The training loop reports signed scores (higher is better): -mae.
            validation_listener.get()(10, -value)
        study.tell(trial, value)
    trial = study.ask()
    with pruning_reports(trial, higher_is_better=False), pytest.raises(optuna.TrialPruned):
        validation_listener.get()(10, -5.0)
    assert trial.study.trials[-1].intermediate_values == {10: 5.0}
    assert validation_listener.get() is None


def test_bad_tune_input_exits_2_and_writes_nothing(monkeypatch, capsys, synth_root, tmp_path, isolated_home):
    search = tmp_path / "search.yaml"
    search.write_text(SEARCH)
    journal = tmp_path / "journal"
    cases = [
        (tune_argv(synth_root, search, str(journal), 0), "--trials must be at least 1"),
        (tune_argv(synth_root, search, "postgresql://nobody@127.0.0.1:1/none", 1), "cannot reach Optuna storage"),
    ]
    empty = tmp_path / "empty.yaml"
    empty.write_text("protocol.temperature: {low: 0.5, high: 0.1}\n")
    cases.append((tune_argv(synth_root, empty, str(journal), 1), "empty search range"))
    nothing = tmp_path / "nothing.yaml"
    nothing.write_text("protocol.temperature: null\n")
    cases.append((tune_argv(synth_root, nothing, str(journal), 1), "nothing to search"))
    for argv, message in cases:
        code, out, err = run_cli(monkeypatch, capsys, *argv)
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1 and out == ""
    assert not journal.exists()
    assert not (isolated_home / "optuna").exists()


def test_a_study_for_another_method_refuses_to_run_a_trial(monkeypatch, capsys, synth_root, tmp_path):
    search = tmp_path / "search.yaml"
    search.write_text(SEARCH)
    journal = tmp_path / "journal"
    storage = open_storage(str(journal))
    open_study(storage, "random_init-knn-synthecho-ef", spec_for(method="videomae"))
    code, out, err = run_cli(monkeypatch, capsys, *tune_argv(synth_root, search, str(journal), 1))
    assert code == 2 and "created for method 'videomae', this command has 'random_init'" in err
    assert len(open_storage(str(journal)).get_all_studies()) == 1
    assert optuna.load_study(study_name="random_init-knn-synthecho-ef", storage=storage).trials == []


def finished_trials(storage: Any, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=storage)
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.fixture(scope="module")
def warm_home(synth_root, tmp_path_factory):
    """A home whose decode and embedding caches hold what every trial needs, so worker processes start warm."""
    folder = tmp_path_factory.mktemp("warm")
    search = folder / "search.yaml"
    search.write_text(SEARCH)
    worker = start_worker(tune_argv(synth_root, search, str(folder / "journal"), 1), folder / "home")
    _, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err[-2000:]
    return folder / "home"


def two_workers_share_one_study(synth_root, tmp_path, warm_home, storage_url: str) -> list[optuna.trial.FrozenTrial]:
    search = tmp_path / "search.yaml"
    search.write_text(SEARCH)
    argv = tune_argv(synth_root, search, storage_url, 3, "--study", "shared")
    homes = [tmp_path / f"worker{i}" for i in range(2)]
    for home in homes:
        for cache in ("decoded", "embeddings", "checkpoints"):
            shutil.copytree(warm_home / cache, home / cache)
    workers = [start_worker(argv, home) for home in homes]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    return finished_trials(open_storage(storage_url), "shared")


def check_six_distinct_trials(trials: list[optuna.trial.FrozenTrial]) -> None:
    assert sorted(t.number for t in trials) == list(range(6))
    assert len({t.params["protocol.temperature"] for t in trials}) == 6
    assert all(0 < t.value < 100 for t in trials)


def test_two_workers_on_a_journal_file_finish_six_trials(synth_root, tmp_path, warm_home):
    journal = str(tmp_path / "study.journal")
    check_six_distinct_trials(two_workers_share_one_study(synth_root, tmp_path, warm_home, journal))


def test_two_workers_on_a_postgresql_server_finish_six_trials(synth_root, tmp_path, warm_home):
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    server = PrivatePostgres(bin_dir)
    url = server.start()
    try:
        check_six_distinct_trials(two_workers_share_one_study(synth_root, tmp_path, warm_home, url))
    finally:
        server.stop()


def test_best_config_reruns_the_best_trial(monkeypatch, capsys, synth_root, tmp_path, isolated_home):
    search = tmp_path / "search.yaml"
    search.write_text(SEARCH)
    best = tmp_path / "best.yaml"
    argv = tune_argv(synth_root, search, str(tmp_path / "journal"), 2, "--out", str(best), "--test-best")
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 0, err
    trials = finished_trials(open_storage(str(tmp_path / "journal")), "random_init-knn-synthecho-ef")
    winner = min(trials, key=lambda t: t.value)
    config = yaml.safe_load(best.read_text())
    assert config["protocol"]["temperature"] == winner.params["protocol.temperature"]
    assert config["data"] == {"dataset": "synthecho", "root": str(synth_root)}
    results = [p for p in (isolated_home / "results").rglob("*.json") if "index" not in p.parts]
    assert len(results) == 1
    run = ["run", "--method", "random_init", "--protocol", "knn", "--task", "ef", "--config", str(best), "--json"]
    code, out, err = run_cli(monkeypatch, capsys, *run)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["val_metrics"]["mae"] == pytest.approx(winner.value, rel=1e-6)
    assert summary["metrics"]["mae"] != pytest.approx(winner.value, rel=1e-6)


def test_run_config_is_applied_before_set(monkeypatch, capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pretrain: {steps: lots}\n")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--method", "videomae", "--config", str(config))
    assert code == 2 and "pretrain.steps must be an integer" in err
    config.write_text("pretrian: {steps: 3}\n")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--method", "videomae", "--config", str(config))
    assert code == 2 and "unknown section 'pretrian' (did you mean 'pretrain'?)" in err

    config.write_text("pretrain: {steps: 7, lr: 0.001}\nmethod: {model: vit_tiny}\n")
    merged = parse_set([*config_file_sets(config), "pretrain.steps=3"])
    assert merged == {"pretrain": {"steps": 3, "lr": 0.001}, "method": {"model": "vit_tiny"}}
