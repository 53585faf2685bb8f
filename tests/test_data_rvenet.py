"""RVENet reader: label CSV, patient grouping, split mapping, DICOM frames, rv tasks, errors, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run_knn
from rvenet_fixture import BANNER, HEIGHT, WIDTH, fixture_patients, write_rvenet_fixture

from echobench.data.base import CORE_COLUMNS
from echobench.data.rvenet import RVENet
from echobench.data.tasks import get_task
from echobench.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rvenet_fixture(tmp_path_factory.mktemp("rvenet") / "RVENet")


def test_table_patients_and_numeric_labels(root: Path) -> None:
    labels = pd.read_csv(root / "RVENet_labels.csv")
    t = RVENet(root).table
    assert list(t.columns) == [*CORE_COLUMNS, "rvef", "hr", "age"]  # the text column is not a label
    assert list(t["video_id"]) == list(labels["FileName"])
    assert list(t["patient_id"]) == ["_".join(n.split("_")[:2]) for n in labels["FileName"]]
    assert t["patient_id"].nunique() == 4
    np.testing.assert_array_equal(t["rvef"], labels["RVEF"])
    np.testing.assert_array_equal(t["fps"], 50.0)
    np.testing.assert_array_equal(t[["num_frames", "height", "width"]], [[16, HEIGHT - BANNER, WIDTH]] * len(t))


def test_split_mapping(root: Path) -> None:
    t = RVENet(root).table
    kept, _, carved = fixture_patients()
    by_patient = t.groupby("patient_id")["split"].agg(set).to_dict()
    assert by_patient == {kept: {"train"}, _: {"train"}, carved: {"val"}, "FFFF_RV": {"test"}}


def test_frames_are_grey_and_cut_to_the_region(root: Path) -> None:
    ds = RVENet(root)
    frames = ds.read_frames(ds.table["path"][0])
    assert frames.shape == (16, HEIGHT - BANNER, WIDTH) and frames.dtype == np.uint8
    assert frames[:, :2].max() < 250  # no banner rows left


def test_rv_tasks(root: Path) -> None:
    table = RVENet(root).table
    labels, valid = get_task("rv_anomaly").targets(table, "rvenet")
    assert valid.all()
    np.testing.assert_array_equal(labels, (table["rvef"] < 45.0).astype(int))
    assert labels.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]  # RVEF 35, 39, 43 reduced; 47 and up normal


def test_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"need exactly one CSV at the root with columns FileName,Split,RVEF"):
        RVENet(root / "DICOM")
    own = Path(shutil.copytree(root, tmp_path / "rv"))
    next((own / "DICOM").glob("*_2.dcm")).unlink()
    with pytest.raises(UserError, match=r"_2\.dcm is listed but missing"):
        RVENet(own)
    labels = pd.read_csv(own / "RVENet_labels.csv")
    labels.assign(Split="holdout").to_csv(own / "RVENet_labels.csv", index=False)
    with pytest.raises(UserError, match="Split 'holdout' is not one of train, validation"):
        RVENet(own)
    labels.to_csv(own / "copy.csv", index=False)
    with pytest.raises(UserError, match=r"found RVENet_labels\.csv, copy\.csv"):
        RVENet(own)


def test_knn_run_end_to_end(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path) -> None:
    summary = run_knn(monkeypatch, capsys, "rvenet", root, "rvef")
    assert summary["dataset"] == "rvenet" and np.isfinite(summary["metrics"]["mae"])
