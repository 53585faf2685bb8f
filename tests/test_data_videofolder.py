"""Generic video folder: labels.csv parsing, special columns, errors, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run_knn
from videofolder_fixture import SPLITS, write_videofolder_fixture

from echobench.context import ProtocolContext
from echobench.data.base import CORE_COLUMNS
from echobench.data.tasks import get_task
from echobench.data.videofolder import VideoFolder
from echobench.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_videofolder_fixture(tmp_path_factory.mktemp("vf") / "mine")


def test_table_from_labels_csv(root: Path) -> None:
    t = VideoFolder(root).table
    assert list(t.columns) == [*CORE_COLUMNS, "ef", "hypertension"]
    assert list(t["video_id"]) == [f"videos/clip{i}" for i in range(len(SPLITS))]
    assert list(t["split"]) == [s.lower() for s in SPLITS]
    assert list(t["patient_id"]) == [f"subject{i // 2}" for i in range(len(SPLITS))]
    assert list(t["ed_frame"]) == [-1, *[i % 4 for i in range(1, len(SPLITS))]]
    np.testing.assert_array_equal(t["ef"], [40.0 + 4 * i for i in range(len(SPLITS))])
    assert np.isnan(t["hypertension"][1]) and t["hypertension"][3] == 1.0
    np.testing.assert_array_equal(t[["num_frames", "height", "width"]], [[16, 36, 48]] * len(SPLITS))
    np.testing.assert_allclose(t["fps"], 25.0)


def test_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing .*labels\.csv; expected layout: <root>/labels\.csv \(FileName"):
        VideoFolder(root / "videos")
    own = tmp_path / "own"
    (own / "videos").mkdir(parents=True)
    labels = pd.read_csv(root / "labels.csv")
    labels.to_csv(own / "labels.csv", index=False)
    with pytest.raises(UserError, match="video .*clip0.avi is listed but missing"):
        VideoFolder(own)
    for name in labels["FileName"]:
        (own / name).symlink_to(root / name)
    labels.assign(EF="high").to_csv(own / "labels.csv", index=False)
    with pytest.raises(UserError, match="label column 'ef' has non-numeric value 'high'"):
        VideoFolder(own)
    labels.assign(Split="holdout").to_csv(own / "labels.csv", index=False)
    with pytest.raises(UserError, match="unknown split values"):
        VideoFolder(own)


def test_knn_run_end_to_end(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path) -> None:
    summary = run_knn(monkeypatch, capsys, "videofolder", root, "ef")
    assert summary["dataset"] == "videofolder" and np.isfinite(summary["metrics"]["mae"])


def test_an_empty_split_is_named(tmp_path) -> None:
    root = write_videofolder_fixture(tmp_path / "vf")
    labels = pd.read_csv(root / "labels.csv")
    labels.loc[labels["Split"].str.lower() == "test", "Split"] = "val"
    labels.to_csv(root / "labels.csv", index=False)
    dataset = VideoFolder(root)
    ctx = ProtocolContext(None, dataset, None, get_task("ef"), None, None, (0.0, 1.0))  # type: ignore[arg-type]
    assert len(ctx.labelled("train")[0]) > 0
    with pytest.raises(UserError, match="^split test of dataset videofolder has no videos"):
        ctx.features("test")
