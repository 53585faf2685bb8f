"""``echobench compare A B`` through the CLI on hand-made result files."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from board_fixture import classification_frame, regression_frame, write_result
from cli_run import invoke
from scipy import stats as sps
from sklearn.metrics import r2_score

from echobench.cli import main
from echobench.metrics import regression_metrics
from echobench.stats import paired_mean_bootstrap, paired_metric_bootstrap


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


def _repeats(tmp_path, method: str, frames) -> list[str]:
    return [
        str(write_result(tmp_path, method, "linear", "ef", frame, pretrain_seed=seed))
        for seed, frame in enumerate(frames)
    ]


def test_compare_of_repeats_is_the_difference_of_their_means_on_shared_patient_resamples(tmp_path, monkeypatch, capsys):
    base = regression_frame(0, 7, n=45)
    base["patient_id"] = [f"P{i // 2}" for i in range(45)]
    rng = np.random.default_rng(8)
    frames_a = [base.assign(prediction=base["target"] + rng.normal(0, 3, 45)) for _ in range(3)]
    frames_b = [base.assign(prediction=base["target"] + rng.normal(0, 6, 45)) for _ in range(2)]
    paths_a = _repeats(tmp_path, "videomae", frames_a)
    # A repeat's rows in another order: repeats are matched by video id.
    paths_b = _repeats(tmp_path, "random_init", [frames_b[0], frames_b[1].sample(frac=1.0, random_state=0)])
    argv = ["compare", paths_a[0], paths_b[0], "--repeat-a", paths_a[1], "--repeat-a", paths_a[2]]
    argv += ["--repeat-b", paths_b[1], "--metric", "r2", "--resamples", "300", "--json"]
    report = json.loads(invoke(monkeypatch, capsys, argv))
    runs_a = [(f["target"].to_numpy(), f["prediction"].to_numpy()) for f in frames_a]
    runs_b = [(f["target"].to_numpy(), f["prediction"].to_numpy()) for f in frames_b]
    expected = paired_mean_bootstrap(regression_metrics, "r2", runs_a, runs_b, base["patient_id"].tolist(), 300)
    assert (report["difference"], report["ci_low"], report["ci_high"]) == pytest.approx(expected)
    assert report["value_a"] == pytest.approx(np.mean([r2_score(*run) for run in runs_a]))
    assert report["value_b"] == pytest.approx(np.mean([r2_score(*run) for run in runs_b]))
    assert (report["results_a"], report["results_b"], report["unit"], report["n_units"]) == (3, 2, "patient", 23)


def test_compare_refuses_repeats_of_two_methods_on_one_side(tmp_path, monkeypatch, capsys):
    frame = regression_frame(3, 0)
    a, other = _repeats(tmp_path, "videomae", [frame])[0], _repeats(tmp_path, "discover", [frame])[0]
    b = _repeats(tmp_path, "random_init", [frame])[0]
    monkeypatch.setattr(sys, "argv", ["echobench", "compare", a, b, "--repeat-a", other])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "must be repeats of one method" in capsys.readouterr().err
