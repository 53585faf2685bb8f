"""HMC-QU reader: sheet labels, patient-grouped stratified folds and their mapping to splits, masks aligned with the
LV wall in the frames, layout errors, and one run through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hmcqu_fixture import FRAMES, HEIGHT, MASKED, PATIENTS, WIDTH, echo_name, reference_frame, write_hmcqu_fixture

from echobench.cli import main
from echobench.data.base import CORE_COLUMNS
from echobench.data.hmc_qu import HmcQu, patient_of
from echobench.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hmcqu_fixture(tmp_path_factory.mktemp("hmcqu"))


def test_table_holds_the_sheet_labels(root: Path) -> None:
    t = HmcQu(root).table
    assert list(t.columns) == [*CORE_COLUMNS, "mi", "mi_segments"]
    a4c = [echo_name(i, "A4C") for i in range(1, PATIENTS + 1)]
    assert list(t["video_id"]) == [*a4c, echo_name(1, "A2C"), echo_name(2, "A2C")]
    assert list(t["patient_id"][:3]) == ["ES0001", "ES0002", "ES0003"] and t["patient_id"].iloc[-1] == "ES0002"
    odd = np.array([i % 2 for i in [*range(1, PATIENTS + 1), 1, 2]])
    np.testing.assert_array_equal(t["mi"], odd)
    np.testing.assert_array_equal(t["mi_segments"], 2 * odd)
    np.testing.assert_array_equal(t["ed_frame"], [reference_frame(i) - 1 for i in [*range(1, PATIENTS + 1), 1, 2]])
    assert (t["es_frame"] == -1).all() and (t["num_frames"] == FRAMES).all() and (t["fps"] == 25.0).all()
    assert (t["height"] == HEIGHT).all() and (t["width"] == WIDTH).all()


def test_patient_of_reads_the_leading_es_number() -> None:
    assert patient_of("ES000100 N_4CH_1") == "ES000100" and patient_of("ES00010 _4CH_1") == "ES00010"
    with pytest.raises(UserError, match="ES<digits>"):
        patient_of("video_1")


def test_folds_are_patient_grouped_stratified_and_define_the_splits(root: Path) -> None:
    ds = HmcQu(root)
    folds = ds.patient_fold
    assert sorted(set(folds.values())) == [0, 1, 2, 3, 4] and len(folds) == PATIENTS
    table = ds.table.assign(fold=[folds[p] for p in ds.table["patient_id"]])
    # Each of the 10 patients' folds holds two patients, one with MI and one without (stratified).
    by_fold = table.drop_duplicates("patient_id").groupby("fold")["mi"]
    assert (by_fold.size() == 2).all() and (by_fold.sum() == 1).all()
    expected = np.where(table["fold"] == 0, "test", np.where(table["fold"] == 1, "val", "train"))
    np.testing.assert_array_equal(table["split"], expected)
    # A patient's A4C and A2C recordings never straddle splits.
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()
    rotated = HmcQu(root, test_fold=3, val_fold=4)
    assert rotated.patient_fold == folds
    assert set(rotated.split_table("test")["patient_id"]) == {p for p, f in folds.items() if f == 3}
    assert HmcQu(root, seed=1).patient_fold != folds
    with pytest.raises(UserError, match="must differ"):
        HmcQu(root, test_fold=2, val_fold=2)


def test_masks_cover_the_cycle_and_align_with_the_wall(root: Path) -> None:
    ds = HmcQu(root)
    for i in MASKED:
        video_id = echo_name(i, "A4C")
        frames = ds.read_frames(ds.table.loc[ds.table["video_id"] == video_id, "path"].iloc[0]).astype(float)
        masks = ds.masks(video_id)
        start = reference_frame(i) - 1
        assert sorted(masks) == list(range(start, start + 11))
        for frame, wall in masks.items():
            assert wall.shape == (HEIGHT, WIDTH) and set(np.unique(wall)) == {0, 1}
            # Masks come at 28x28 and are stretched back: the wall is bright, the rest grey.
            assert frames[frame][wall == 1].mean() > 170 and frames[frame][wall == 0].mean() < 100
    assert ds.masks(echo_name(5, "A4C")) == {} and ds.mask_classes == ("lv_wall",)


def test_layout_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing .*A4C\.xlsx.*expected layout"):
        HmcQu(tmp_path)
    sheet = pd.read_excel(root / "A4C.xlsx")
    sheet.loc[2, "SEG9"] = "maybe"
    sheet.to_excel(tmp_path / "A4C.xlsx", index=False)
    with pytest.raises(UserError, match=r"segment labels \['maybe'\]"):
        HmcQu(tmp_path)


def test_run_knn_mi_through_the_cli(root: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    argv = ["echobench", "run", "--dataset", "hmc-qu", "--data-root", str(root), "--method", "random_init"]
    tiny = ["--set", "protocol.ks=[1]", "--set", "method.frames=4", "--set", "method.stride=1"]
    tiny += ["--set", "method.size=32", "--set", "protocol.ci_resamples=0"]
    monkeypatch.setattr(sys, "argv", [*argv, "--protocol", "knn", "--task", "mi", "--json", *tiny])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "hmc-qu" and summary["task"] == "mi"
    assert summary["chosen"]["k"] == 1 and 0.0 <= summary["metrics"]["balanced_accuracy"] <= 1.0
