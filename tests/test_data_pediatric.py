"""EchoNet-Pediatric reader: both views, fold -> split mapping, point tracings, ED/ES, layout errors, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run_knn
from pediatric_fixture import FOLDS, ellipse_points, write_pediatric_fixture

from echobench.data.base import CORE_COLUMNS
from echobench.data.echonet_pediatric import (
    EchoNetPediatric,
    EchoNetPediatricA4C,
    EchoNetPediatricPSAX,
    tracing_polygons,
)
from echobench.errors import UserError

FRAMES = 16


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pediatric_fixture(tmp_path_factory.mktemp("pediatric") / "EchoNet-Pediatric", frames=FRAMES)


def test_table_holds_both_views_with_their_labels(root: Path) -> None:
    ds = EchoNetPediatric(root)
    t = ds.table
    assert list(t.columns) == [*CORE_COLUMNS, "ef", "male", "age_years", "weight_kg", "height_cm", "psax"]
    for view in ("A4C", "PSAX"):
        files = pd.read_csv(root / view / "FileList.csv")
        rows = t[t["video_id"].str.startswith(f"{view}/")]
        names = files["FileName"].str.removesuffix(".avi")
        assert list(rows["video_id"]) == [f"{view}/{n}" for n in names]
        assert list(rows["path"]) == [str(root.resolve() / view / "Videos" / f"{n}.avi") for n in names]
        np.testing.assert_array_equal(rows["ef"], files["EF"])
        np.testing.assert_array_equal(rows["male"], (files["Sex"] == "M").astype(float))
        np.testing.assert_array_equal(rows["height_cm"], files["Height"])
        np.testing.assert_array_equal(rows["psax"], float(view == "PSAX"))
    np.testing.assert_array_equal(t["num_frames"], FRAMES)
    np.testing.assert_array_equal(t[["height", "width"]], 48)
    np.testing.assert_allclose(t["fps"], 50.0)


def test_folds_map_to_splits(root: Path) -> None:
    expected = {0: "train", 1: "train", 3: "train", 7: "train", 8: "val", 9: "test"}
    ds = EchoNetPediatric(root)
    folds = [fold for view in ("A4C", "PSAX") for fold in FOLDS[view]]
    assert list(ds.table["split"]) == [expected[f] for f in folds]
    custom = EchoNetPediatric(root, train_folds=(0, 1), val_folds=(3,), test_folds=(7,))
    assert list(custom.table["split"]) == ["train", "val", "test", "train"]
    with pytest.raises(ValueError, match="one split only"):
        EchoNetPediatric(root, train_folds=range(9))


def test_single_view_datasets(root: Path) -> None:
    a4c, psax = EchoNetPediatricA4C(root), EchoNetPediatricPSAX(root)
    assert len(a4c) == len(FOLDS["A4C"]) and a4c.table["video_id"].str.startswith("A4C/").all()
    assert len(psax) == len(FOLDS["PSAX"]) and (psax.table["psax"] == 1.0).all()
    assert a4c.content_hash() != psax.content_hash()


def test_polygon_is_the_traced_points_in_file_order(root: Path) -> None:
    traces = pd.read_csv(root / "A4C" / "VolumeTracings.csv")
    ds = EchoNetPediatric(root)
    first = traces["FileName"].iloc[0].removesuffix(".avi")
    frame = int(traces["Frame"].iloc[0])
    rows = traces[(traces["FileName"] == f"{first}.avi") & (traces["Frame"] == str(frame))]
    np.testing.assert_array_equal(ds.tracings(f"A4C/{first}")[frame], rows[["X", "Y"]].to_numpy())


def test_ed_es_from_areas_and_no_systolic_rows(root: Path) -> None:
    ds = EchoNetPediatric(root)
    t = ds.table
    # The fixture traces ES first with es = ed + FRAMES // 2; the larger area must win regardless of order.
    traced = t[t["ed_frame"] >= 0]
    np.testing.assert_array_equal(traced["es_frame"] - traced["ed_frame"], FRAMES // 2)
    # The last A4C video's systolic row is "No Systolic": one traced frame, so ED/ES are unknown.
    last = f"A4C/{t['video_id'][len(FOLDS['A4C']) - 1].split('/')[1]}"
    assert list(ds.tracings(last)) != [] and len(ds.tracings(last)) == 1
    assert (t.loc[t["video_id"] == last, ["ed_frame", "es_frame"]].to_numpy() == -1).all()
    assert len(traced) == len(t) - 1


def test_tracing_polygons_skips_placeholders_and_degenerate_groups() -> None:
    ring = ellipse_points(10.0, 10.0, 4.0, 6.0, count=8)
    rows = [("v.avi", x, y, "3") for x, y in ring]
    rows += [("v.avi", 0.0, 0.0, "No Diastolic"), ("w", 1.0, 1.0, "2"), ("w", 2.0, 2.0, "2")]
    polygons = tracing_polygons(pd.DataFrame(rows, columns=["FileName", "X", "Y", "Frame"]))
    assert list(polygons) == ["v"] and list(polygons["v"]) == [3]
    np.testing.assert_array_equal(polygons["v"][3], ring)


def test_masks_rasterise_the_polygon(root: Path) -> None:
    ds = EchoNetPediatric(root)
    vid = ds.table["video_id"][0]
    ed = int(ds.table["ed_frame"][0])
    masks = ds.masks(vid)
    assert set(masks) == set(ds.tracings(vid))
    assert masks[ed].shape == (48, 48) and masks[ed].sum() > masks[int(ds.table["es_frame"][0])].sum()


def test_wrong_root_names_the_first_missing_file(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing .*A4C/FileList\.csv; expected layout: <root>/A4C/FileList\.csv"):
        EchoNetPediatric(root / "A4C")
    with pytest.raises(UserError, match=r"missing .*PSAX/FileList\.csv"):
        EchoNetPediatricPSAX(root / "A4C")


def test_bad_fold_and_missing_video(root: Path, tmp_path: Path) -> None:
    own = Path(shutil.copytree(root, tmp_path / "ped"))
    (own / "PSAX" / "Videos" / "CRPSAX001-0001.avi").unlink()
    with pytest.raises(UserError, match="CRPSAX001-0001.avi is listed but missing"):
        EchoNetPediatric(own)
    files = pd.read_csv(own / "A4C" / "FileList.csv")
    files["Split"] = files["Split"].astype(object)
    files.loc[0, "Split"] = "TRAIN"
    files.to_csv(own / "A4C" / "FileList.csv", index=False)
    with pytest.raises(UserError, match="fold numbers 0-9"):
        EchoNetPediatricA4C(own)


def test_knn_run_end_to_end(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path) -> None:
    summary = run_knn(monkeypatch, capsys, "echonet-pediatric", root, "ef")
    assert summary["dataset"] == "echonet-pediatric" and summary["task"] == "ef"
    assert np.isfinite(summary["metrics"]["mae"])
