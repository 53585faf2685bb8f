"""``echobench data verify``: each fault planted in an EchoNet-format folder is found; a clean folder passes; the
CLI exits 2 on a fault; CAMUS and HMC-QU folders verify clean."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from camus_fixture import write_camus_nifti
from echonet_fixture import write_echonet_fixture
from hmcqu_fixture import write_hmcqu_fixture

from echobench.cli import main
from echobench.data.camus import Camus
from echobench.data.echonet import EchoNetDynamic
from echobench.data.hmc_qu import HmcQu
from echobench.data.tasks import get_task
from echobench.data.verify import Report, verify


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_echonet_fixture(tmp_path_factory.mktemp("echonet"), videos=6, frames=12, size=48, seed=0)


def _edit_csv(root: Path, name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    table = pd.read_csv(root / name, dtype={"FileName": str, "PatientID": str})
    change(table).to_csv(root / name, index=False)


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[row, column] = value
        return table

    return change


def _truncate(root: Path) -> None:
    video = root / "Videos" / "0X0003.avi"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])


def _garble(root: Path) -> None:
    (root / "Videos" / "0X0004.avi").write_bytes(b"RIFF not really an avi")


# Each case plants one fault and names the check that must flag it and a word of its detail.
FAULTS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "missing video": (lambda r: (r / "Videos" / "0X0002.avi").unlink(), "missing files", "0X0002"),
    "truncated avi": (_truncate, "frame counts", "of 12)"),
    "garbage avi": (_garble, "videos decode", "0X0004"),
    "ef above 100": (lambda r: _edit_csv(r, "FileList.csv", _set("EF", 1, 130.0)), "ef range", "0X0001 (130)"),
    "ef below 0": (lambda r: _edit_csv(r, "FileList.csv", _set("EF", 5, -3.0)), "ef range", "0X0005 (-3)"),
    "duplicate filename": (
        lambda r: _edit_csv(r, "FileList.csv", lambda t: pd.concat([t, t.iloc[[2]]], ignore_index=True)),
        "duplicate ids",
        "0X0002",
    ),
    "patient in two splits": (
        lambda r: _edit_csv(r, "FileListExtra.csv", _set("PatientID", 2, "Ptrain0")),
        "patient overlap",
        "Ptrain0 (train/val)",
    ),
    "empty split": (lambda r: _edit_csv(r, "FileList.csv", _set("Split", [4, 5], "VAL")), "splits", "test"),
}


def _by_check(report: Report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in report.findings:
        found.setdefault(finding.check, []).append(f"{finding.severity}: {finding.detail}")
    return found


def test_a_clean_folder_has_no_fault(clean: Path) -> None:
    report = verify(EchoNetDynamic, clean, progress=False)
    assert report.faults == [], report.faults
    assert report.split_counts == {"train": 2, "val": 2, "test": 2}
    assert {f.check for f in report.findings} >= {"missing files", "extra files", "videos decode", "ef range"}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_planted_fault_is_found(fault: str, clean: Path, tmp_path: Path) -> None:
    plant, check, word = FAULTS[fault]
    root = Path(shutil.copytree(clean, tmp_path / "echonet"))
    plant(root)
    report = verify(EchoNetDynamic, root, progress=False)
    flagged = [f for f in report.faults if f.check == check]
    assert flagged and word in flagged[0].detail, _by_check(report)
    # Only the planted fault (and the reader's refusal of it, where the reader refuses) is reported.
    assert {f.check for f in report.faults} <= {check, "run would accept"}, _by_check(report)


def test_a_missing_label_is_a_warning_as_run_leaves_the_video_out(clean: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(clean, tmp_path / "echonet"))
    _edit_csv(root, "FileList.csv", _set("EF", 4, float("nan")))
    report = verify(EchoNetDynamic, root, progress=False)
    assert report.faults == [], _by_check(report)
    warned = [f for f in report.findings if f.check == "ef present"]
    assert warned[0].severity == "warning" and "0X0004" in warned[0].detail
    table = EchoNetDynamic(root).table
    targets, valid = get_task("ef").targets(table)
    assert list(table["video_id"][~valid]) == ["0X0004"] and np.isfinite(targets[valid]).all()

    _edit_csv(root, "FileList.csv", _set("EF", list(range(6)), float("nan")))
    empty = [f for f in verify(EchoNetDynamic, root, progress=False).faults if f.check == "ef present"]
    assert empty and "6 videos lack ef" in empty[0].detail


def test_refused_folders_are_still_checked_in_full(clean: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(clean, tmp_path / "echonet"))
    (root / "Videos" / "0X0002.avi").unlink()
    _edit_csv(root, "FileList.csv", _set("EF", 0, 140.0))
    checks = {f.check for f in verify(EchoNetDynamic, root, progress=False).faults}
    assert checks == {"run would accept", "missing files", "ef range"}


def test_extra_files_and_wrong_roots(clean: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(clean, tmp_path / "echonet"))
    shutil.copy(root / "Videos" / "0X0001.avi", root / "Videos" / "stray.avi")
    extra = next(f for f in verify(EchoNetDynamic, root, progress=False).findings if f.check == "extra files")
    assert extra.severity == "warning" and "stray.avi" in extra.detail
    layout = verify(EchoNetDynamic, tmp_path / "nowhere", progress=False).faults
    assert [f.check for f in layout] == ["layout"]
    (tmp_path / "empty").mkdir()
    layout = verify(Camus, tmp_path / "empty", progress=False).faults
    assert layout[0].check == "layout" and "subgroup_training.txt" in layout[0].detail


def test_camus_and_hmcqu_folders_verify_clean(tmp_path: Path) -> None:
    for cls, root in ((Camus, write_camus_nifti(tmp_path / "camus")), (HmcQu, write_hmcqu_fixture(tmp_path / "hq"))):
        report = verify(cls, root, progress=False)
        assert report.faults == [], report.faults


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["echobench", "data", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_exit_codes(clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, text = _cli(monkeypatch, capsys, "verify", "--dataset", "echonet-dynamic", "--data-root", str(clean))
    assert code == 0 and "valid echonet-dynamic folder" in text
    root = Path(shutil.copytree(clean, tmp_path / "echonet"))
    _edit_csv(root, "FileList.csv", _set("EF", 1, 130.0))
    code, text = _cli(monkeypatch, capsys, "verify", "--dataset", "echonet-dynamic", "--data-root", str(root))
    assert code == 2 and "FAULT" in text and "1 fault(s)" in text


def test_every_registered_dataset_reports_a_wrong_root_as_a_layout_fault(tmp_path: Path) -> None:
    from echobench import registry

    for info in registry.describe(registry.DATASETS_GROUP):
        faults = verify(registry.load_dataset(info.name), tmp_path, progress=False).faults
        assert [f.check for f in faults] == ["layout"], (info.name, faults)
