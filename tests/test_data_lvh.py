"""EchoNet-LVH reader: one row per video from per-measurement rows, batch folders, ED/ES frames, errors, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run_knn
from lvh_fixture import CALCS, HEIGHT, SPLITS, WIDTH, write_lvh_fixture

from echobench.data.base import CORE_COLUMNS
from echobench.data.echonet_lvh import EchoNetLVH
from echobench.data.tasks import get_task
from echobench.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lvh_fixture(tmp_path_factory.mktemp("lvh") / "EchoNet-LVH")


def test_one_row_per_video_with_a_column_per_measurement(root: Path) -> None:
    t = EchoNetLVH(root).table
    assert list(t.columns) == [*CORE_COLUMNS, "ivsd", "lvidd", "lvpwd", "ivss", "lvids", "lvpws"]
    assert list(t["split"]) == list(SPLITS)
    assert [Path(p).parent.name for p in t["path"]] == [f"Batch{i % 4 + 1}" for i in range(len(SPLITS))]
    np.testing.assert_array_equal(t[["height", "width"]], [[HEIGHT, WIDTH]] * len(SPLITS))
    np.testing.assert_allclose(t["lvidd"], [CALCS["LVIDd"] * (1 + 0.1 * i) for i in range(len(SPLITS))])
    # Video 0's IVSd was measured twice (1.0 and 1.2 cm): the label is their mean.
    assert t["ivsd"][0] == pytest.approx(1.1)
    # The last video has no systolic measurements.
    assert np.isnan(t[["ivss", "lvids", "lvpws"]].to_numpy()[-1]).all()


def test_ed_es_are_the_measurement_frames(root: Path) -> None:
    rows = pd.read_csv(root / "MeasurementsList.csv", index_col=0)
    t = EchoNetLVH(root).table
    for i, name in enumerate(t["video_id"]):
        mine = rows[rows["HashedFileName"] == name]
        assert t["ed_frame"][i] == mine[mine["Calc"] == "LVIDd"]["Frame"].iloc[0]
        systolic = mine[mine["Calc"] == "LVIDs"]["Frame"]
        assert t["es_frame"][i] == (systolic.iloc[0] if len(systolic) else -1)
    assert EchoNetLVH(root).tracings(t["video_id"][0]) == {}


def test_measurement_tasks_are_registered(root: Path) -> None:
    table = EchoNetLVH(root).table
    targets, valid = get_task("lvids").targets(table, "echonet-lvh")
    assert valid.tolist() == [True] * (len(SPLITS) - 1) + [False]
    np.testing.assert_allclose(targets[valid], table["lvids"][valid])


def test_errors_name_the_problem(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing .*MeasurementsList\.csv; expected layout: <root>/Measurements"):
        EchoNetLVH(root / "Batch1")
    own = Path(shutil.copytree(root, tmp_path / "lvh"))
    next((own / "Batch3").glob("*.avi")).unlink()
    with pytest.raises(UserError, match=r"0X02AB00CD\.avi is listed in MeasurementsList\.csv but is in none of Batch1"):
        EchoNetLVH(own)
    rows = pd.read_csv(own / "MeasurementsList.csv", index_col=0).drop(columns=["split"])
    rows.to_csv(own / "MeasurementsList.csv")
    with pytest.raises(UserError, match=r"lacks columns \['split'\]"):
        EchoNetLVH(own)


def test_knn_run_end_to_end(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path) -> None:
    summary = run_knn(monkeypatch, capsys, "echonet-lvh", root, "lvidd")
    assert summary["dataset"] == "echonet-lvh" and summary["task"] == "lvidd"
    assert np.isfinite(summary["metrics"]["mae"])
