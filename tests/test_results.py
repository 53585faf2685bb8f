"""Result files are immutable and indexed; leakage is judged by the video ids the encoder was pretrained on."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_end_to_end import TINY, mlflow_runs, run_json

from echobench.cli import main
from echobench.results import leakage, videos_hash

KNN = ["--task", "ef", "--set", "protocol.ci_resamples=20"]
MODEL = [arg for pair in zip(TINY[0::2], TINY[1::2], strict=True) for arg in pair if "protocol." not in pair[1]]


def test_runs_differing_only_in_k_leave_two_result_files(monkeypatch, capsys, synth_root, isolated_home) -> None:
    first = run_json(monkeypatch, capsys, synth_root, "random_init", *KNN, "--set", "protocol.k=1")
    second = run_json(monkeypatch, capsys, synth_root, "random_init", *KNN, "--set", "protocol.k=3")
    assert first["result_path"] != second["result_path"]
    assert first["run_hash"] != second["run_hash"]
    files = sorted((isolated_home / "results").rglob("knn-ef-*.json"))
    assert [str(f) for f in files] == sorted([first["result_path"], second["result_path"]])
    assert {json.loads(f.read_text())["chosen"]["k"] for f in files} == {1, 3}

    again = run_json(monkeypatch, capsys, synth_root, "random_init", *KNN, "--set", "protocol.k=1")
    assert again["reused"] is True and again["result_path"] == first["result_path"]
    assert again["metrics"] == first["metrics"] and again["mlflow_run_id"] == first["mlflow_run_id"]
    assert len(mlflow_runs(isolated_home, "echobench-eval")) == 2

    forced = run_json(monkeypatch, capsys, synth_root, "random_init", *KNN, "--set", "protocol.k=1", "--force")
    assert forced["reused"] is False and forced["mlflow_run_id"] != first["mlflow_run_id"]
    assert forced["result_path"] == first["result_path"] and forced["metrics"] == first["metrics"]
    assert len(mlflow_runs(isolated_home, "echobench-eval")) == 3

    monkeypatch.setattr("sys.argv", ["echobench", "results", "--json"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(e["result_path"] for e in listed) == sorted([first["result_path"], second["result_path"]])
    by_path = {e["result_path"]: e for e in listed}
    assert by_path[second["result_path"]]["overrides"][-1] == "protocol.k=3"
    assert by_path[second["result_path"]]["primary_metric"] == "mae"
    assert by_path[second["result_path"]]["value"] == second["metrics"]["mae"]


def test_kfold_flags_test_folds_the_encoder_was_pretrained_on(monkeypatch, capsys, synth_root) -> None:
    inner = ["--set", "protocol.inner_config={epochs: 2, ci_resamples: 0}", "--set", "protocol.folds=3"]
    argv = ["echobench", "run", "--method", "videomae", "--protocol", "kfold", "--dataset", "synthecho"]
    monkeypatch.setattr("sys.argv", [*argv, "--data-root", str(synth_root), "--json", "--task", "ef", *MODEL, *inner])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    kfold = json.loads(captured.out)
    assert "test video(s) were in the encoder's pretraining set" in captured.err
    splits = pd.read_csv(synth_root / "FileList.csv")["Split"].str.lower().value_counts()
    # Folds are drawn from train+val and VideoMAE pretrained on train: every training video is in a test fold.
    assert kfold["evaluated_on_pretraining_videos"] is True
    assert kfold["pretraining_overlap"]["test"] == splits["train"]
    record = json.loads(open(kfold["result_path"]).read())
    assert record["num_evaluated_videos"]["test"] == splits["train"] + splits["val"]

    knn = run_json(monkeypatch, capsys, synth_root, "videomae", *KNN, "--set", "protocol.k=1")
    assert knn["evaluated_on_pretraining_videos"] is False and knn["pretraining_overlap"]["test"] == 0
    assert knn["pretraining_overlap"]["train"] == splits["train"]


def test_leakage_compares_video_ids_per_role() -> None:
    flags = leakage({"train": {"a", "b"}, "test": {"c", "d"}}, {"a", "b", "x"})
    assert flags["pretraining_overlap"] == {"test": 0, "train": 2}
    assert flags["evaluated_on_pretraining_videos"] is False
    assert flags["evaluated_videos_hash"]["test"] == videos_hash(["d", "c", "d"])
    assert leakage({"test": {"c", "x"}}, {"a", "x"})["evaluated_on_pretraining_videos"] is True
