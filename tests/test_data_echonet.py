"""EchoNet-Dynamic format reader, LV polygons/masks, dataset hashes and video decoding."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from echonet_fixture import tracing_rows, write_avi, write_echonet_fixture

from echobench.data.base import CORE_COLUMNS, SPLITS
from echobench.data.echonet import EchoNetDynamic, tracing_polygon
from echobench.data.geometry import lv_area, polygon_mask
from echobench.data.video_io import read_video_gray, resize_frames
from echobench.errors import UserError


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_echonet_fixture(tmp_path_factory.mktemp("echonet"), videos=6, frames=20, size=112, seed=0)


@pytest.fixture
def own_root(fixture_root: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture for tests that modify files."""
    return Path(shutil.copytree(fixture_root, tmp_path / "echonet"))


def test_table_round_trips_file_list(fixture_root: Path) -> None:
    ds = EchoNetDynamic(fixture_root)
    files = pd.read_csv(fixture_root / "FileList.csv", dtype={"FileName": str})
    extra = pd.read_csv(fixture_root / "FileListExtra.csv", dtype={"FileName": str, "PatientID": str})
    t = ds.table
    assert list(t.columns) == [*CORE_COLUMNS, "ef", "esv", "edv", "mi", "heartrate"]
    assert list(t.index) == list(range(6))
    assert list(t["video_id"]) == list(files["FileName"])
    assert list(t["path"]) == [str(fixture_root.resolve() / "Videos" / f"{v}.avi") for v in files["FileName"]]
    assert list(t["split"]) == [s.lower() for s in files["Split"]] == ["train", "train", "val", "val", "test", "test"]
    np.testing.assert_array_equal(t["ef"], files["EF"])
    np.testing.assert_array_equal(t["edv"], files["EDV"])
    np.testing.assert_array_equal(t["num_frames"], 20)
    np.testing.assert_array_equal(t["fps"], 50.0)
    assert list(t["patient_id"]) == list(extra["PatientID"])
    np.testing.assert_array_equal(t["mi"], extra["MI"].astype(float))
    assert t["mi"].dtype == np.float64 and t["num_frames"].dtype == np.int64
    for split in SPLITS:
        assert ds.split_table(split)["patient_id"].nunique() == 2
        assert list(ds.split_table(split).index) == [0, 1]


def test_ed_es_are_larger_and_smaller_traced_area(own_root: Path) -> None:
    extra = pd.read_csv(own_root / "FileListExtra.csv", dtype={"FileName": str, "PatientID": str})
    # Without the explicit columns ED/ES come from the tracings alone (written ES first in the file).
    extra.drop(columns=["EDFrame", "ESFrame"]).to_csv(own_root / "FileListExtra.csv", index=False)
    ds = EchoNetDynamic(own_root)
    np.testing.assert_array_equal(ds.table["ed_frame"], extra["EDFrame"])
    np.testing.assert_array_equal(ds.table["es_frame"], extra["ESFrame"])
    for vid, ed, es in zip(ds.table["video_id"], ds.table["ed_frame"], ds.table["es_frame"], strict=True):
        traced = ds.tracings(vid)
        assert set(traced) == {ed, es}
        assert lv_area(traced[ed]) > lv_area(traced[es])


def test_tracing_polygon_order_matches_volume_tracings(fixture_root: Path) -> None:
    ds = EchoNetDynamic(fixture_root)
    traces = pd.read_csv(fixture_root / "VolumeTracings.csv")
    rows = traces[(traces["FileName"] == "0X0002.avi") & (traces["Frame"] == ds.table.loc[2, "ed_frame"])]
    xy = rows[["X1", "Y1", "X2", "Y2"]].to_numpy()
    expected = np.concatenate([xy[1:, :2], xy[1:, 2:][::-1]])
    np.testing.assert_array_equal(ds.tracings("0X0002")[int(ds.table.loc[2, "ed_frame"])], expected)


def test_polygon_area_and_mask_by_hand() -> None:
    # Long axis, then chords at y = 2, 5, 8 of widths 2, 4, 2: a hexagon of two trapezoids of area 9 each.
    chords = np.array([[5, 0, 5, 10], [4, 2, 6, 2], [3, 5, 7, 5], [4, 8, 6, 8]], dtype=float)
    polygon = tracing_polygon(chords)
    np.testing.assert_array_equal(polygon, [[4, 2], [3, 5], [4, 8], [6, 8], [7, 5], [6, 2]])
    assert lv_area(polygon) == pytest.approx(18.0)
    # fillPoly includes border pixels: the rectangle x 2..10, y 3..8 covers 9 x 6 pixels.
    mask = polygon_mask(np.array([[2, 3], [10, 3], [10, 8], [2, 8]], dtype=float), height=12, width=16)
    assert mask.dtype == bool and mask.shape == (12, 16)
    assert mask.sum() == 54 and mask[3:9, 2:11].all()


def test_fixture_tracing_area_close_to_ellipse(fixture_root: Path) -> None:
    rows = tracing_rows(56.0, 56.0, 20.0, 30.0)
    area = lv_area(tracing_polygon(rows))
    # 11 chords inscribe the ellipse between y = ±0.95 b: a bit less than π a b.
    assert 0.85 * np.pi * 600 < area < np.pi * 600
    mask = polygon_mask(tracing_polygon(rows), 112, 112)
    assert abs(mask.sum() - area) / area < 0.1


def test_patient_defaults_to_video_and_missing_tracings_tolerated(own_root: Path) -> None:
    (own_root / "FileListExtra.csv").unlink()
    traces = pd.read_csv(own_root / "VolumeTracings.csv")
    traces[traces["FileName"] != "0X0004.avi"].to_csv(own_root / "VolumeTracings.csv", index=False)
    ds = EchoNetDynamic(own_root)
    assert list(ds.table["patient_id"]) == list(ds.table["video_id"])
    assert list(ds.table.columns) == [*CORE_COLUMNS, "ef", "esv", "edv"]
    assert ds.table.loc[4, ["ed_frame", "es_frame"]].tolist() == [-1, -1]
    assert ds.tracings("0X0004") == {}
    assert ds.table.loc[3, "ed_frame"] >= 0


def test_missing_video_names_it(own_root: Path) -> None:
    (own_root / "Videos" / "0X0003.avi").unlink()
    with pytest.raises(UserError, match=r"0X0003\.avi"):
        EchoNetDynamic(own_root)


def test_missing_file_list_names_it_and_the_layout(own_root: Path) -> None:
    (own_root / "FileList.csv").unlink()
    with pytest.raises(UserError, match=r"FileList\.csv.*expected layout.*VolumeTracings\.csv"):
        EchoNetDynamic(own_root)


def test_bad_split_and_non_numeric_label_are_user_errors(own_root: Path) -> None:
    files = pd.read_csv(own_root / "FileList.csv", dtype={"FileName": str})
    files.loc[0, "Split"] = "HOLDOUT"
    files.to_csv(own_root / "FileList.csv", index=False)
    with pytest.raises(UserError, match="(?i)holdout"):
        EchoNetDynamic(own_root)
    files.loc[0, "Split"] = "TRAIN"
    files.to_csv(own_root / "FileList.csv", index=False)
    extra = pd.read_csv(own_root / "FileListExtra.csv", dtype=str)
    extra["Sex"] = "F"
    extra.to_csv(own_root / "FileListExtra.csv", index=False)
    with pytest.raises(UserError, match="(?i)'sex'.*'F'"):
        EchoNetDynamic(own_root)


def test_content_hash_tracks_labels_and_videos(own_root: Path) -> None:
    base = EchoNetDynamic(own_root)
    assert len(base.content_hash()) == 16 and base.content_hash() == EchoNetDynamic(own_root).content_hash()
    split_hashes = {s: base.split_hash(s) for s in SPLITS}

    files = pd.read_csv(own_root / "FileList.csv", dtype={"FileName": str})
    files.loc[2, "EF"] += 1.0  # a validation video
    files.to_csv(own_root / "FileList.csv", index=False)
    relabelled = EchoNetDynamic(own_root)
    assert relabelled.content_hash() != base.content_hash()
    assert relabelled.split_hash("val") != split_hashes["val"]
    assert relabelled.split_hash("train") == split_hashes["train"]

    write_avi(own_root / "Videos" / "0X0000.avi", np.full((7, 112, 112), 90, np.uint8))
    assert EchoNetDynamic(own_root).content_hash() != relabelled.content_hash()


def test_read_video_gray_agrees_with_opencv(fixture_root: Path) -> None:
    path = fixture_root / "Videos" / "0X0001.avi"
    frames = read_video_gray(path)
    assert frames.shape == (20, 112, 112) and frames.dtype == np.uint8
    capture = cv2.VideoCapture(str(path))
    reference = []
    while (read := capture.read())[0]:
        reference.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2GRAY))
    capture.release()
    # Two decoders, two YUV->grey roundings: equal up to 1 grey level.
    assert np.abs(frames.astype(int) - np.stack(reference)).max() <= 1


@pytest.mark.parametrize("content", [b"", b"RIFF not really an avi" * 40])
def test_corrupt_or_empty_video_is_user_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.avi"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"broken\.avi"):
        read_video_gray(path)
    with pytest.raises(UserError, match=r"absent\.avi"):
        read_video_gray(tmp_path / "absent.avi")


def test_resize_squares_the_sector_box_then_area_resizes() -> None:
    # Every pixel is image (values 16..255), so the sector box is the whole 40x60 frame: the square of side 60 is
    # centred on it and takes 10 black rows above and below.
    frames = np.random.default_rng(0).integers(16, 256, size=(3, 40, 60), dtype=np.uint8)
    out = resize_frames(frames, 20)
    padded = np.pad(frames, ((0, 0), (10, 10), (0, 0)))
    expected = np.stack([cv2.resize(f, (20, 20), interpolation=cv2.INTER_AREA) for f in padded])
    np.testing.assert_array_equal(out, expected)
    # A 3x area reduction is the mean of 3x3 blocks (rounded).
    block_mean = padded.reshape(3, 20, 3, 20, 3).mean(axis=(2, 4))
    assert np.abs(out.astype(float) - block_mean).max() <= 0.5
    # Square frames that are all image pass through unchanged at their own size.
    np.testing.assert_array_equal(resize_frames(frames[:, :, 10:50], 40), frames[:, :, 10:50])
