"""MIMIC-IV-ECHO reader: cines only, patient-hash splits, region crop, header memo, errors, pretraining end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import TINY, invoke
from mimic_fixture import BANNER, HEIGHT, WIDTH, training_subjects, write_mimic_fixture
from sector_video import sector_mask

from echobench.data.base import CORE_COLUMNS
from echobench.data.decode_cache import DecodeCache
from echobench.data.mimic_echo import MimicIVEcho
from echobench.data.patient_hash import hashed_split, patient_unit
from echobench.data.video_io import Crop, sector_box, working_crop
from echobench.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mimic_fixture(tmp_path_factory.mktemp("mimic") / "mimic-iv-echo")


def test_table_lists_the_cines_on_disk_without_labels(root: Path) -> None:
    t = MimicIVEcho(root).table
    assert list(t.columns) == list(CORE_COLUMNS)
    assert list(t["video_id"]) == [f"{90_000_000 + k}_{n:04d}" for k in range(3) for n in (1, 2)]
    assert list(t["patient_id"]) == [s for s in training_subjects() for _ in range(2)]
    assert set(t["split"]) == {"train"}
    np.testing.assert_array_equal(t["num_frames"], 16)
    np.testing.assert_allclose(t["fps"], 30.0, rtol=1e-4)
    # The region-declaring cines report the region's size, the others the full frame.
    np.testing.assert_array_equal(t["height"], [HEIGHT - BANNER, HEIGHT] * 3)
    np.testing.assert_array_equal(t["width"], WIDTH)


def test_patient_hash_split_is_deterministic_and_proportional() -> None:
    assert patient_unit("10000032", "mimic-iv-echo") == patient_unit("10000032", "mimic-iv-echo")
    assert patient_unit("10000032", "mimic-iv-echo") != patient_unit("10000032", "rvenet")
    splits = pd.Series([hashed_split(str(k), "mimic-iv-echo", 0.05, 0.05) for k in range(4000)]).value_counts()
    assert splits["train"] / 4000 == pytest.approx(0.9, abs=0.02)
    assert splits["val"] / 4000 == pytest.approx(0.05, abs=0.01)


def test_region_crop_then_sector_square(root: Path, tmp_path: Path) -> None:
    ds = MimicIVEcho(root)
    with_region, without = ds.table["path"][0], ds.table["path"][1]
    frames = ds.read_frames(with_region)
    assert frames.shape == (16, HEIGHT - BANNER, WIDTH)
    assert frames[:, :2].max() < 230  # the banner above the region is gone
    full = ds.read_frames(without)
    assert full.shape == (16, HEIGHT, WIDTH)
    # DICOM is lossless and speckle is >= 40, so the sector box is exactly the fan's bounding box.
    fan = np.argwhere(sector_mask(HEIGHT - BANNER, WIDTH, WIDTH / 2, 2.0, 0.85 * (HEIGHT - BANNER), np.radians(35.0)))
    top, bottom, left, right = sector_box(full)
    assert (top, bottom, left, right) == (
        BANNER + fan[:, 0].min(),
        BANNER + fan[:, 0].max() + 1,
        fan[:, 1].min(),
        fan[:, 1].max() + 1,
    )
    cache = DecodeCache.build(ds, 32, root=tmp_path / "decoded", progress=False)
    assert cache.crop(ds.table["video_id"][0]) == working_crop(frames)
    side = max(bottom - top, right - left)
    assert cache.crop(ds.table["video_id"][1]) == Crop((top + bottom - side) // 2, (left + right - side) // 2, side)


def test_headers_are_memoised(root: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = MimicIVEcho(root).table
    assert len(list((isolated_home / "data" / "mimic-iv-echo-headers").glob("*.csv"))) == 1
    monkeypatch.setattr("echobench.data.mimic_echo.dicom_info", None)  # any header read would now fail
    pd.testing.assert_frame_equal(MimicIVEcho(root).table, first)


def test_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing .*echo-record-list\.csv; expected layout: <root>/echo-record"):
        MimicIVEcho(root / "files")
    own = tmp_path / "bare"
    own.mkdir()
    shutil.copy(root / "echo-record-list.csv", own)
    with pytest.raises(UserError, match=r"none of the 12 DICOMs .* is on disk \(first: .*files/p10/"):
        MimicIVEcho(own)


def test_pretrain_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path, isolated_home: Path
) -> None:
    argv = ["pretrain", "--dataset", "mimic-iv-echo", "--data-root", str(root), "--method", "videomae"]
    invoke(monkeypatch, capsys, [*argv, *TINY, "--set", "pretrain.steps=2"])
    metas = [json.loads(p.read_text()) for p in (isolated_home / "checkpoints").rglob("meta.json")]
    assert len(metas) == 1 and metas[0]["method"] == "videomae" and metas[0]["step"] == 2
