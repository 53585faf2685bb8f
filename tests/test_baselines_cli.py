"""The baseline plugins (SIGMA, MGMAE, supervised) pretrain and evaluate through the real CLI with kNN and a linear
probe on a tiny SynthEcho."""

from __future__ import annotations

import json

import pytest
from cli_run import KNN, TINY, invoke

LINEAR = ["--set", "protocol.epochs=3", "--set", "protocol.ci_resamples=50"]
SHORT = ["--set", "pretrain.steps=2", "--set", "method.decoder_depth=1"]
EXTRA = {"sigma": SHORT, "mgmae": SHORT, "supervised": ["--set", "pretrain.steps=2"]}


@pytest.mark.parametrize("method", ["sigma", "mgmae", "supervised"])
def test_baseline_runs_knn_and_linear(monkeypatch, capsys, synth_root, method) -> None:
    base = ["run", "--dataset", "synthecho", "--data-root", str(synth_root), "--method", method, "--json"]
    knn = json.loads(invoke(monkeypatch, capsys, [*base, "--protocol", "knn", *TINY, *EXTRA[method], *KNN]))
    linear = json.loads(invoke(monkeypatch, capsys, [*base, "--protocol", "linear", *TINY, *EXTRA[method], *LINEAR]))
    assert knn["method"] == linear["method"] == method
    # One pretraining serves both protocols.
    assert knn["checkpoint_hash"] == linear["checkpoint_hash"]
    assert 0.0 <= knn["metrics"]["balanced_accuracy"] <= 1.0
    assert linear["metrics"]
    record = json.loads(open(knn["result_path"]).read())
    assert record["pretrained_steps"] == 2
    # kNN scores ef_anomaly, a rule on the EF column the supervised ceiling trains on (its default task, ef).
    assert record["trained_on_task"] is (method == "supervised")
