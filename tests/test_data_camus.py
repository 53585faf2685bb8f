"""CAMUS reader: both releases, labels and splits as the fixture wrote them, axis order, masks aligned with frames,
quality subsets, layout errors, and one run through the CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from camus_fixture import FRAMES, HEIGHT, PATIENTS, WIDTH, sequence, write_camus_mhd, write_camus_nifti

from echobench.cli import main
from echobench.data.base import CORE_COLUMNS
from echobench.data.camus import Camus, CamusGoodMedium, CamusPoor
from echobench.errors import UserError

SPLIT_OF = {"training": "train", "validation": "val", "testing": "test"}


@pytest.fixture(scope="module")
def nifti_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_camus_nifti(tmp_path_factory.mktemp("camus") / "CAMUS_public")


@pytest.fixture(scope="module")
def mhd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_camus_mhd(tmp_path_factory.mktemp("camus2019") / "camus")


def test_nifti_table_matches_what_the_fixture_wrote(nifti_root: Path) -> None:
    ds = Camus(nifti_root)
    t = ds.table
    assert ds.release == "nifti"
    assert list(t.columns) == [*CORE_COLUMNS, "ef", "quality"]
    assert list(t["video_id"]) == [f"{p}_{v}" for p, *_ in PATIENTS for v in ("2CH", "4CH")]
    assert list(t["split"]) == [SPLIT_OF[s] for _, s, *_ in PATIENTS for _ in range(2)]
    assert list(t["patient_id"]) == [p for p, *_ in PATIENTS for _ in range(2)]
    np.testing.assert_array_equal(t["ef"], [ef for *_, ef, _ in PATIENTS for _ in range(2)])
    quality = {"Poor": 0, "Medium": 1, "Good": 2}
    np.testing.assert_array_equal(t["quality"], [quality[q] for *_, q in PATIENTS for _ in range(2)])
    np.testing.assert_array_equal(t["num_frames"], FRAMES)
    np.testing.assert_array_equal(t["fps"], 25.0)
    assert (t["height"] == HEIGHT).all() and (t["width"] == WIDTH).all()
    # The cfg files count from 1: ED 1 and ES NbFrame are frames 0 and NbFrame - 1.
    assert (t["ed_frame"] == 0).all() and (t["es_frame"] == FRAMES - 1).all()


def test_mhd_release_reads_volumes_and_the_chosen_fold(mhd_root: Path) -> None:
    first, second = Camus(mhd_root), Camus(mhd_root, fold=2)
    assert first.release == "mhd"
    assert list(first.table.columns) == [*CORE_COLUMNS, "ef", "edv", "esv", "quality"]
    np.testing.assert_allclose(first.table["esv"], first.table["edv"] * (1 - first.table["ef"] / 100), atol=0.01)
    assert first.table["fps"].isna().all()
    # Fold 1 tests on the last two patients; fold 2's lists are shifted by one patient.
    assert sorted(set(first.split_table("test")["patient_id"])) == ["patient0006", "patient0007"]
    assert sorted(set(second.split_table("test")["patient_id"])) == ["patient0001", "patient0007"]
    with pytest.raises(UserError, match="fold"):
        Camus(mhd_root, fold=11)


@pytest.mark.parametrize("release", ["nifti", "mhd"])
def test_frames_are_rows_by_columns_and_match_the_written(release: str, nifti_root: Path, mhd_root: Path) -> None:
    ds = Camus(nifti_root if release == "nifti" else mhd_root)
    frames = ds.read_frames(ds.table.loc[3, "path"])
    images, _ = sequence(seed=11)  # patient index 1, view 4CH
    assert frames.shape == (FRAMES, HEIGHT, WIDTH) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, images)


@pytest.mark.parametrize("release", ["nifti", "mhd"])
def test_masks_align_with_frames_at_ed_and_es(release: str, nifti_root: Path, mhd_root: Path) -> None:
    ds = Camus(nifti_root if release == "nifti" else mhd_root)
    video_id = "patient0002_4CH"
    frames = ds.read_frames(ds.table.loc[ds.table["video_id"] == video_id, "path"].iloc[0])
    masks = ds.masks(video_id)
    assert sorted(masks) == [0, FRAMES - 1]
    assert ds.mask_classes == ("lv", "myocardium", "la")
    for frame, label in masks.items():
        assert label.shape == (HEIGHT, WIDTH) and set(np.unique(label)) == {0, 1, 2, 3}
        image = frames[frame].astype(float)
        # Cavity and atrium are drawn dark, the myocardium bright, the background in between.
        assert image[label == 1].mean() < 30 and image[label == 3].mean() < 30
        assert image[label == 2].mean() > 180 and 70 < image[label == 0].mean() < 110
    # The LV shrinks from ED to ES.
    assert (masks[0] == 1).sum() > (masks[FRAMES - 1] == 1).sum()
    assert ds.tracings(video_id) == {}


def test_quality_subsets_partition_the_sequences(nifti_root: Path) -> None:
    everything, good_medium, poor = Camus(nifti_root), CamusGoodMedium(nifti_root), CamusPoor(nifti_root)
    assert set(good_medium.table["quality"]) == {1.0, 2.0} and set(poor.table["quality"]) == {0.0}
    assert sorted([*good_medium.table["video_id"], *poor.table["video_id"]]) == sorted(everything.table["video_id"])
    assert good_medium.name == "camus-good-medium" and poor.video_files() is None
    assert len(everything.video_files()) == len(everything)


def test_wrong_roots_name_the_first_missing_file(tmp_path: Path, nifti_root: Path) -> None:
    with pytest.raises(UserError, match=r"missing .*database_split/subgroup_training\.txt.*expected layout"):
        Camus(tmp_path)
    copy = Path(shutil.copytree(nifti_root, tmp_path / "copy"))
    (copy / "database_nifti" / "patient0003" / "Info_4CH.cfg").unlink()
    with pytest.raises(UserError, match=r"missing .*patient0003/Info_4CH\.cfg"):
        Camus(copy)
    (copy / "database_nifti" / "patient0003" / "Info_4CH.cfg").write_text("ED: 1\nImageQuality: Excellent\n")
    with pytest.raises(UserError, match="ImageQuality 'Excellent'"):
        Camus(copy)


def test_run_knn_through_the_cli(nifti_root: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    argv = ["echobench", "run", "--dataset", "camus", "--data-root", str(nifti_root), "--method", "random_init"]
    tiny = ["--set", "protocol.ks=[1]", "--set", "method.frames=4", "--set", "method.stride=1"]
    tiny += ["--set", "method.size=32", "--set", "protocol.ci_resamples=0"]
    monkeypatch.setattr(sys, "argv", [*argv, "--protocol", "knn", "--json", *tiny])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "camus" and summary["task"] == "ef_anomaly"
    assert summary["chosen"]["k"] == 1 and 0.0 <= summary["metrics"]["balanced_accuracy"] <= 1.0
