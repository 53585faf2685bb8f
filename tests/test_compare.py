"""``echobench compare A B`` through the CLI on hand-made result files."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from board_fixture import classification_frame, regression_frame, write_result
from cli_run import invoke
from scipy import stats as sps

from echobench.cli import main
from echobench.metrics import regression_metrics
from echobench.stats import paired_metric_bootstrap


def test_compare_reports_paired_difference_interval_and_wilcoxon(tmp_path, monkeypatch, capsys):
    a_frame, b_frame = regression_frame(3, 0, n=50), regression_frame(3, 0, n=50)
    b_frame["prediction"] = b_frame["prediction"] + np.random.default_rng(5).normal(0, 4, 50)
    a = write_result(tmp_path, "videomae", "linear", "ef", a_frame)
    b = write_result(tmp_path, "random_init", "linear", "ef", b_frame.sample(frac=1.0, random_state=0))
    report = json.loads(invoke(monkeypatch, capsys, ["compare", str(a), str(b), "--json", "--resamples", "500"]))
    y, pa = a_frame["target"].to_numpy(), a_frame["prediction"].to_numpy()
    pb = b_frame["prediction"].to_numpy()
    diff, low, high = paired_metric_bootstrap(regression_metrics, "mae", (y, pa), (y, pb), n_resamples=500)
    assert report["metric"] == "mae" and report["n_units"] == 50 and report["unit"] == "video"
    assert (report["difference"], report["ci_low"], report["ci_high"]) == pytest.approx((diff, low, high))
    expected_p = sps.wilcoxon(np.abs(pa - y) - np.abs(pb - y)).pvalue
    assert report["wilcoxon_p"] == pytest.approx(expected_p)
    assert report["difference"] < 0 and not report["tied"] and report["verdict"].startswith("A is better")


def test_compare_resamples_patients_when_predictions_carry_them(tmp_path, monkeypatch, capsys):
    frames = [classification_frame(0.6, 0), classification_frame(0.55, 1)]
    for frame in frames:
        frame["patient_id"] = [f"P{i // 3}" for i in range(len(frame))]
    a = write_result(tmp_path, "a", "knn", "ef_anomaly", frames[0])
    b = write_result(tmp_path, "b", "knn", "ef_anomaly", frames[1])
    report = json.loads(invoke(monkeypatch, capsys, ["compare", str(a), str(b), "--json", "--metric", "auroc"]))
    assert report["unit"] == "patient" and report["n_units"] == 20
    assert report["ci_low"] <= report["difference"] <= report["ci_high"]


def test_compare_rejects_results_of_different_tasks(tmp_path, monkeypatch, capsys):
    a = write_result(tmp_path, "a", "linear", "ef", regression_frame(3, 0))
    b = write_result(tmp_path, "b", "knn", "ef_anomaly", classification_frame(0.5, 0))
    monkeypatch.setattr(sys, "argv", ["echobench", "compare", str(a), str(b)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "differ in task" in capsys.readouterr().err
