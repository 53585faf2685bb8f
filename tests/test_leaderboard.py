"""Leaderboards from hand-made result files: seed aggregation, intervals, ranking, published rows, ties,
escaping, determinism, and bad input."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from board_fixture import classification_frame, regression_frame, write_result
from cli_run import invoke
from scipy import stats as sps
from sklearn import metrics as skm

from echobench.board_output import (
    REPORTED_LEGEND,
    board_plots,
    csv_text,
    html_page,
    markdown,
    print_board,
    write_outputs,
)
from echobench.cli import main
from echobench.errors import UserError
from echobench.leaderboard import REPORTED, build, discover_results, load_board

REPO = Path(__file__).resolve().parent.parent
NASTY = "<script>alert(1)</script> | *bold* _x_ [link](http://e) `code` & [red]rich[/red]"


def table_of(built, task, protocol):
    return next(t for t in built.tables if t.task.name == task and t.protocol == protocol)


def test_seeds_of_one_configuration_are_aggregated_and_other_configurations_are_separate_rows(tmp_path):
    results = tmp_path / "results"
    write_result(
        results,
        "videomae",
        "linear",
        "ef",
        regression_frame(3, 0),
        per_seed={"mae": [2.0, 3.0]},
        metrics={"mae": 2.5, "rmse": 3.0, "r2": 0.9},
        pretrain_seed=0,
    )
    write_result(
        results,
        "videomae",
        "linear",
        "ef",
        regression_frame(3, 1),
        per_seed={"mae": [4.0, 5.0]},
        metrics={"mae": 4.5, "rmse": 5.0, "r2": 0.8},
        pretrain_seed=1,
    )
    write_result(
        results,
        "videomae",
        "linear",
        "ef",
        regression_frame(3, 2),
        name="linear-ef-other",
        metrics={"mae": 9.0, "rmse": 9.5, "r2": 0.1},
        method_config={"size": 64},
    )
    built = build(load_board("synthecho"), discover_results(results))
    rows = table_of(built, "ef", "linear").rows
    assert len(rows) == 2
    pooled = rows[0]
    assert pooled.n_seeds == 4 and pooled.n_results == 2
    values = [2.0, 3.0, 4.0, 5.0]
    assert pooled.metrics["mae"]["mean"] == pytest.approx(3.5)
    assert pooled.metrics["mae"]["sd"] == pytest.approx(np.std(values, ddof=1))
    low, high = sps.t.interval(0.95, 3, loc=3.5, scale=np.std(values, ddof=1) / 2)
    assert (pooled.metrics["mae"]["ci_low"], pooled.metrics["mae"]["ci_high"]) == pytest.approx((low, high))
    assert pooled.metrics["mae"]["ci_source"] == "seeds"
    # rmse has no per-seed values: one value per file, two files.
    assert pooled.metrics["rmse"]["mean"] == pytest.approx(4.0)
    assert all(r.method.startswith("videomae [") for r in rows)  # two variants of one method are told apart


def test_csv_has_interval_columns_from_seeds_or_the_recorded_bootstrap(tmp_path):
    results = tmp_path / "results"
    write_result(
        results,
        "videomae",
        "linear",
        "ef",
        regression_frame(3, 0),
        per_seed={"mae": [2.0, 3.0, 4.0]},
        metrics={"mae": 3.0, "rmse": 3.5, "r2": 0.9},
    )
    write_result(
        results, "random_init", "linear", "ef", regression_frame(6, 1), metrics={"mae": 6.0, "rmse": 7.0, "r2": 0.5}
    )
    built = build(load_board("synthecho"), discover_results(results))
    records = list(csv.DictReader(io.StringIO(csv_text(built))))
    by_method = {r["method"]: r for r in records}
    for metric in ("mae", "rmse", "r2"):
        for suffix in ("", "_sd", "_ci_low", "_ci_high", "_ci_source"):
            assert f"{metric}{suffix}" in records[0]
    low, high = sps.t.interval(0.95, 2, loc=3.0, scale=1.0 / np.sqrt(3))
    assert float(by_method["videomae"]["mae_ci_low"]) == pytest.approx(low, abs=1e-6)
    assert float(by_method["videomae"]["mae_ci_high"]) == pytest.approx(high, abs=1e-6)
    assert by_method["random_init"]["mae_ci_source"] == "bootstrap"
    assert float(by_method["random_init"]["mae_ci_low"]) == pytest.approx(5.9)  # the fixture's recorded ci95
    assert by_method["videomae"]["rank"] == "1" and by_method["random_init"]["rank"] == "2"


def _echonet_board(tmp_path: Path, papers: tuple[str, ...] = ("yang-echocardmae",)) -> Path:
    """A copy of the EchoNet-Dynamic board reading copies of the given papers' published files."""
    board = tmp_path / "boards" / "echo.yaml"
    (board.parent / "published").mkdir(parents=True)
    for paper in papers:
        source = (REPO / "leaderboards" / "published" / f"{paper}.csv").read_text()
        (board.parent / "published" / f"{paper}.csv").write_text(source)
    text = (REPO / "leaderboards" / "echonet-dynamic.yaml").read_text()
    head, _ = text.split("published:")
    listed = "".join(f"  - published/{paper}.csv\n" for paper in papers)
    board.write_text(head + "published:\n" + listed + "sections_note: test\n")
    return board


def test_published_rows_are_reported_and_never_ranked_with_reproduced_rows_by_default(tmp_path):
    board = load_board(str(_echonet_board(tmp_path)))
    results = tmp_path / "results"
    write_result(results, "videomae", "finetune-full", "ef", regression_frame(8, 0), dataset="echonet-dynamic")
    built = build(board, discover_results(results))
    table = table_of(built, "ef", "finetune-full")
    reported = [r for r in table.rows if r.source == REPORTED]
    reproduced = [r for r in table.rows if r.source != REPORTED]
    assert reported and len(reproduced) == 1
    assert all(r.rank is None for r in reported)
    assert reproduced[0].rank == 1  # although every reported MAE (≈ 3.8-4.1) is lower than ≈ 6.4
    assert table.rows[0] is reproduced[0]
    assert "EchoCardMAE" in {r.method for r in reported}
    assert all("Table" in r.citation for r in reported)
    md = markdown(built)
    assert "reported" in md
    ranked = build(board, discover_results(results), with_published=True)
    table = table_of(ranked, "ef", "finetune-full")
    assert table.rows[0].source == REPORTED and table.rows[0].rank == 1
    assert next(r for r in table.rows if r.source != REPORTED).rank == len(table.rows)


def test_frozen_and_fine_tuned_published_rows_sit_in_their_own_sections(tmp_path):
    board = load_board(str(_echonet_board(tmp_path)))
    built = build(board, [])
    sections = {t.section for t in built.tables}
    assert sections == {"Fine-tuned encoder"}  # EchoCardMAE reports fine-tuned numbers only


def test_a_method_name_with_html_markdown_and_rich_markup_is_escaped_in_every_output(tmp_path, capsys):
    results = tmp_path / "results"
    write_result(results, NASTY, "knn", "ef_anomaly", classification_frame(0.7, 0))
    write_result(results, "random_init", "knn", "ef_anomaly", classification_frame(0.2, 1))
    built = build(load_board("synthecho"), discover_results(results))
    page = html_page(built, board_plots(built))
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | *bold* _x_ [link](http://e) `code` &amp; [red]rich[/red]" in page
    assert page.count("<script>") == 1  # only the page's own sorting script
    md = markdown(built)
    assert "<script>" not in md
    assert (
        r"&lt;script&gt;alert(1)&lt;/script&gt; \| \*bold\* \_x\_ \[link\](http://e) \`code\` &amp; \[red\]rich\[/red\]"
        in md
    )
    for line in md.splitlines():
        if line.startswith("| ") and "alert" in line:
            # 11 columns → 12 cell separators; the name's own pipe is escaped and does not split a cell.
            assert line.replace(r"\|", "").count("|") == 12
    records = list(csv.DictReader(io.StringIO(csv_text(built))))
    assert NASTY in {r["method"] for r in records}
    print_board(built)
    err = capsys.readouterr().err
    assert "[red]rich[/red]" in err  # printed literally, not interpreted as rich markup


def test_tied_marker_when_the_paired_interval_covers_zero(tmp_path):
    results = tmp_path / "results"
    base = regression_frame(4, 0, n=60)
    near = base.copy()
    near["prediction"] = base["prediction"] + np.random.default_rng(9).normal(0, 0.3, 60)
    far = base.copy()
    far["prediction"] = base["target"] + 3 * (base["prediction"] - base["target"]) + 5
    write_result(results, "leader", "linear", "ef", base)
    write_result(results, "twin", "linear", "ef", near)
    write_result(results, "worse", "linear", "ef", far)
    table = table_of(build(load_board("synthecho"), discover_results(results)), "ef", "linear")
    by = {r.method: r for r in table.rows}
    leader = min(("leader", "twin"), key=lambda m: by[m].primary("mae"))
    other = "twin" if leader == "leader" else "leader"
    assert by[leader].versus_leader == "leader" and by[leader].rank == 1
    assert by[other].tied is True and by[other].versus_leader.startswith("tied with leader")
    assert by["worse"].tied is False and by["worse"].versus_leader.startswith("differs from leader")
    assert by["worse"].versus_leader.endswith("over 60 videos")
    md = markdown(build(load_board("synthecho"), discover_results(results)))
    assert "| ≈2 |" in md and "| 3 |" in md


def test_versus_leader_names_the_patients_it_resampled(tmp_path):
    results = tmp_path / "results"
    base = regression_frame(4, 0, n=60).assign(patient_id=[f"P{i // 2:02d}" for i in range(60)])
    far = base.assign(prediction=base["target"] + 3 * (base["prediction"] - base["target"]) + 5)
    write_result(results, "leader", "linear", "ef", base)
    write_result(results, "worse", "linear", "ef", far)
    table = table_of(build(load_board("synthecho"), discover_results(results)), "ef", "linear")
    worse = next(r for r in table.rows if r.method == "worse")
    assert worse.versus_leader.endswith("over 30 patients")


def test_leakage_flag_from_either_key_and_predictions_from_the_recorded_path(tmp_path):
    results = tmp_path / "results"
    path = write_result(
        results,
        "videomae",
        "linear",
        "ef",
        None,
        metrics={"mae": 3.0, "rmse": 4.0, "r2": 0.5},
        evaluated_on_pretraining_videos=True,
    )
    elsewhere = tmp_path / "results" / "preds" / "p.csv"
    elsewhere.parent.mkdir()
    regression_frame(3, 0).to_csv(elsewhere, index=False)
    record = json.loads(path.read_text())
    record["predictions_csv"] = "../../../preds/p.csv"
    path.write_text(json.dumps(record))
    found = discover_results(results)
    assert found[0].leakage
    assert found[0].predictions_path() == path.parent / "../../../preds/p.csv"
    built = build(load_board("synthecho"), found)
    assert "pretrained on evaluated videos" in markdown(built)


def test_outputs_are_deterministic(tmp_path):
    results = tmp_path / "results"
    write_result(results, "videomae", "knn", "ef_anomaly", classification_frame(0.7, 0))
    write_result(results, "videomae", "linear", "ef", regression_frame(3, 0))
    first = write_outputs(
        build(load_board("synthecho"), discover_results(results)),
        tmp_path / "a",
        board_plots(build(load_board("synthecho"), discover_results(results))),
    )
    built = build(load_board("synthecho"), discover_results(results))
    second = write_outputs(built, tmp_path / "b", board_plots(built))
    for x, y in zip(first, second, strict=True):
        assert x.read_bytes() == y.read_bytes()
    assert "data:image/png;base64," in second[2].read_text()


def test_committed_example_board_rebuilds_byte_for_byte(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    invoke(
        monkeypatch, capsys, ["leaderboard", "synthecho", "--results", "leaderboards/results", "--out", str(tmp_path)]
    )
    for suffix in ("md", "csv", "html"):
        committed = REPO / "leaderboards" / f"synthecho.{suffix}"
        assert (tmp_path / f"synthecho.{suffix}").read_bytes() == committed.read_bytes(), suffix


def test_malformed_and_foreign_json_are_named_and_skipped(tmp_path, capsys):
    results = tmp_path / "results"
    write_result(results, "videomae", "linear", "ef", regression_frame(3, 0))
    (results / "broken.json").write_text("{not json")
    (results / "index.json").write_text(json.dumps({"runs": ["a", "b"]}))
    (results / "half.json").write_text(json.dumps({"method": "x", "metrics": {}}))
    found = discover_results(results)
    assert [f.record["method"] for f in found] == ["videomae"]
    err = capsys.readouterr().err
    assert "broken.json" in err and "half.json" in err
    assert "index.json" not in err


def _exit_message(monkeypatch, capsys, argv):
    monkeypatch.setattr(sys, "argv", ["echobench", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    return " ".join(capsys.readouterr().err.split())


def test_unknown_board_lists_the_available_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    message = _exit_message(monkeypatch, capsys, ["leaderboard", "synthech", "--results", str(tmp_path)])
    assert "unknown board 'synthech'" in message
    for name in ("camus-seg", "echonet-dynamic", "hmc-qu", "synthecho"):
        assert name in message


def test_a_board_metric_that_no_result_reports_is_named(tmp_path):
    board = tmp_path / "b.yaml"
    text = (REPO / "leaderboards" / "synthecho.yaml").read_text()
    board.write_text(text.replace("metrics: [mae, rmse, r2]", "metrics: [mae, rmse, r2, mape]"))
    results = tmp_path / "results"
    write_result(results, "videomae", "linear", "ef", regression_frame(3, 0))
    with pytest.raises(UserError, match="task ef names metric\\(s\\) mape that no result reports"):
        build(load_board(str(board)), discover_results(results))


def test_plots_are_logged_to_a_given_mlflow_run(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from echobench.tracking import start_run, tracking_uri

    results = tmp_path / "results"
    write_result(results, "videomae", "knn", "ef_anomaly", classification_frame(0.7, 0))
    with start_run("echobench-boards", "board", {}, {}) as run:
        run_id = run.run_id
    monkeypatch.chdir(REPO)
    argv = ["leaderboard", "synthecho", "--results", str(results), "--out", str(tmp_path / "out")]
    invoke(monkeypatch, capsys, [*argv, "--mlflow-run", run_id])
    logged = sorted(a.path for a in MlflowClient(tracking_uri=tracking_uri()).list_artifacts(run_id, "leaderboard"))
    assert logged == [
        "leaderboard/reliability-synthecho-ef-anomaly-knn.png",
        "leaderboard/roc-synthecho-ef-anomaly-knn.png",
    ]


def test_reported_rows_with_fewer_training_labels_get_their_own_tables():
    built = build(load_board("camus-seg"), [])
    protocols = [t.protocol for t in built.tables if t.section == "Frozen encoder"]
    assert protocols[0] == "segmentation"
    assert {"segmentation (10% labels)", "segmentation (20% labels)", "segmentation (50% labels)"} <= set(protocols)
    full = built.tables[0]
    assert all("labels" not in row.setting or "100% training labels" in row.setting for row in full.rows)


def test_published_rows_sit_beside_the_echobench_metric_of_the_papers_definition(tmp_path):
    board = load_board(str(_echonet_board(tmp_path, ("stebler-temporal-mae", "mishra-discover"))))
    results = tmp_path / "results"
    frame = classification_frame(0.6, 0)
    write_result(results, "temporal_mae", "mlp", "ef_binary", frame, dataset="echonet-dynamic")
    write_result(results, "discover", "knn", "ef_anomaly", classification_frame(0.5, 1), dataset="echonet-dynamic")
    built = build(board, discover_results(results))
    binary = table_of(built, "ef_binary", "mlp")
    # The board lists auroc, f1, accuracy: Temporal MAE's F1 (of the normal class) adds f1_negative beside f1.
    assert binary.task.metrics == ("auroc", "f1", "f1_negative", "accuracy")
    reported = {r.method: r for r in binary.rows if r.source == REPORTED}
    frame_mae = reported["Frame-based MAE"]
    assert frame_mae.metrics["f1_negative"]["mean"] == 0.87 and "f1" not in frame_mae.metrics
    assert "F1 = f1_negative (class 0: normal)" in frame_mae.setting
    reproduced = next(r for r in binary.rows if r.source != REPORTED)
    y, pred = frame["target"].to_numpy(), frame["prediction"].to_numpy()
    assert reproduced.metrics["f1_negative"]["mean"] == pytest.approx(skm.f1_score(y, pred, pos_label=0))
    assert reproduced.metrics["f1"]["mean"] == pytest.approx(skm.f1_score(y, pred, pos_label=1))
    anomaly = table_of(built, "ef_anomaly", "knn")
    assert anomaly.task.metrics == ("balanced_accuracy", "auroc", "f1", "f1_macro")
    discover = next(r for r in anomaly.rows if r.method == "DISCOVER" and r.source == REPORTED)
    assert "f1" not in discover.metrics and discover.metrics["f1_macro"]["mean"] == pytest.approx(0.6145)
    md = markdown(built)
    header = next(line for line in md.splitlines() if line.startswith("| rank") and "f1\\_negative" in line)
    assert header.index("| f1 |") < header.index("f1\\_negative |") < header.index("| accuracy |")
    assert md.count("Each reported row's metrics follow the paper's own definition") == 1
    records = list(csv.DictReader(io.StringIO(csv_text(built))))
    by_method = {r["method"]: r for r in records if r["task"] == "ef_binary" and r["protocol"] == "mlp"}
    assert by_method["Frame-based MAE"]["f1_negative"] == "0.870000" and by_method["Frame-based MAE"]["f1"] == ""


def _unescaped(md: str) -> str:
    """Markdown text without its backslash escapes, on one line."""
    return " ".join(md.replace("\\", "").split())


def test_a_board_listing_the_definitions_metric_gets_no_duplicate_column_and_no_legend_without_reports(tmp_path):
    path = _echonet_board(tmp_path, ("stebler-temporal-mae",))
    path.write_text(
        path.read_text().replace("metrics: [auroc, f1, accuracy]", "metrics: [auroc, f1_negative, accuracy]")
    )
    built = build(load_board(str(path)), [])
    binary = table_of(built, "ef_binary", "mlp")
    assert binary.task.metrics == ("auroc", "f1_negative", "accuracy")
    assert REPORTED_LEGEND in _unescaped(markdown(built))
    results = tmp_path / "results"
    write_result(results, "videomae", "knn", "ef_anomaly", classification_frame(0.7, 0))
    assert REPORTED_LEGEND not in _unescaped(markdown(build(load_board("synthecho"), discover_results(results))))
