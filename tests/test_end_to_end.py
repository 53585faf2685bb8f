"""The vertical slice through the real CLI: SynthEcho → decode cache → pretrain → embeddings → kNN → MLflow + JSON."""

import json
import sys
from pathlib import Path

import pandas as pd

from echobench.cli import main
from echobench.compare import compare_results

TINY = [
    "--set",
    "method.model=vit_tiny",
    "--set",
    "method.frames=4",
    "--set",
    "method.stride=2",
    "--set",
    "method.size=32",
    "--set",
    "method.patch=8",
    "--set",
    "method.tubelet=2",
    "--set",
    "pretrain.steps=4",
    "--set",
    "pretrain.batch_size=4",
    "--set",
    "protocol.ci_resamples=200",
]


def run_json(monkeypatch, capsys, root, method, *extra, protocol="knn", settings=TINY):
    argv = [
        "echobench",
        "run",
        "--method",
        method,
        "--protocol",
        protocol,
        "--dataset",
        "synthecho",
        "--data-root",
        str(root),
        "--json",
        *settings,
        *extra,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    out = capsys.readouterr().out
    return json.loads(out)


def mlflow_runs(home, experiment):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def test_run_json_results_and_tracking(monkeypatch, capsys, synth_root, isolated_home):
    results = {m: run_json(monkeypatch, capsys, synth_root, m) for m in ("videomae", "random_init")}
    for method, summary in results.items():
        assert summary["method"] == method and summary["protocol"] == "knn" and summary["task"] == "ef_anomaly"
        assert summary["dataset"] == "synthecho"
        assert set(summary["metrics"]) >= {"accuracy", "balanced_accuracy", "auroc", "f1"}
        assert summary["chosen"]["k"] >= 1
        record = json.loads(open(summary["result_path"]).read())
        assert summary["result_path"].endswith(
            f"results/{method}/{summary['checkpoint_hash']}/synthecho/knn-ef_anomaly-{record['run_hash']}.json"
        )
        assert record["checkpoint_hash"] == summary["checkpoint_hash"]
        assert record["metrics"]["balanced_accuracy"] == summary["metrics"]["balanced_accuracy"]
        assert record["evaluated_on_pretraining_videos"] is False
        assert record["pretraining_overlap"]["test"] == 0
        assert {"git_commit", "environment", "echobench_version", "split_hashes", "plugin_version"} <= set(record)
        # Intervals resample test patients (SynthEcho has several videos per patient), and say so.
        patients = pd.read_csv(record["predictions_csv"])["patient_id"].nunique()
        assert record["ci_unit"] == summary["ci_unit"] == "patient"
        assert record["ci_units"] == summary["ci_units"] == patients < record["num_test_videos"]
    paths = [results[m]["result_path"] for m in ("videomae", "random_init")]
    report = compare_results(Path(paths[0]), Path(paths[1]), resamples=200)
    assert (report["unit"], report["n_units"]) == ("patient", results["videomae"]["ci_units"])
    evaluations = mlflow_runs(isolated_home, "echobench-eval")
    assert {r.info.run_id for r in evaluations} == {s["mlflow_run_id"] for s in results.values()}
    assert all(r.info.status == "FINISHED" for r in evaluations)
    pretraining = mlflow_runs(isolated_home, "echobench-pretrain")
    assert len(pretraining) == 1 and "loss" in pretraining[0].data.metrics

    warm = run_json(monkeypatch, capsys, synth_root, "videomae")
    assert warm["metrics"] == results["videomae"]["metrics"]
    assert len(mlflow_runs(isolated_home, "echobench-pretrain")) == 1


def test_two_cold_runs_give_identical_metrics(monkeypatch, capsys, synth_root, tmp_path):
    outcomes = []
    for name in ("first", "second"):
        monkeypatch.setenv("ECHOBENCH_HOME", str(tmp_path / name))
        outcomes.append(run_json(monkeypatch, capsys, synth_root, "videomae", "--task", "ef"))
    assert outcomes[0]["checkpoint_hash"] == outcomes[1]["checkpoint_hash"]
    assert outcomes[0]["metrics"] == outcomes[1]["metrics"]
    assert outcomes[0]["chosen"] == outcomes[1]["chosen"]


def test_linear_probe_reuses_the_embedding_cache(monkeypatch, capsys, synth_root, isolated_home):
    knn = run_json(monkeypatch, capsys, synth_root, "random_init", "--task", "ef")
    cached = sorted((isolated_home / "embeddings").rglob("*.safetensors"))
    # The same clips as the kNN's (linear's default is 4 per video), so every split is already encoded.
    argv_extra = ["--set", "protocol.epochs=5", "--set", "protocol.clips=1"]
    monkeypatch.setattr("echobench.embed.EvalClipDataset", None)  # any fresh encode would now fail
    probe = run_json(monkeypatch, capsys, synth_root, "random_init", *argv_extra, protocol="linear", settings=TINY[:-2])
    assert probe["protocol"] == "linear" and probe["task"] == "ef"
    assert set(probe["metrics"]) == {"mae", "rmse", "r2"}
    assert probe["chosen"]["solver"] == "closed_form" and probe["chosen"]["penalty"] > 0
    assert probe["checkpoint_hash"] == knn["checkpoint_hash"]
    assert sorted((isolated_home / "embeddings").rglob("*.safetensors")) == cached
