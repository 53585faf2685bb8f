"""``echobench run`` applies ``data verify``'s label, video and split checks to the rows it uses."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from cli_run import KNN, TINY
from echonet_fixture import write_avi, write_echonet_fixture

from echobench.cli import main


def _run(monkeypatch, capsys, root, *extra, method="random_init"):
    argv = ["run", "--method", method, "--dataset", "echonet-dynamic", "--data-root", str(root)]
    monkeypatch.setattr(sys, "argv", ["echobench", *argv, "--json", *TINY, *KNN, *extra])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def root(tmp_path):
    return write_echonet_fixture(tmp_path / "fx", videos=9, frames=12)


def _edit(root, name, column, row, value):
    table = pd.read_csv(root / name, dtype={"FileName": str, "PatientID": str})
    table[column] = table[column].astype(object)
    table.loc[row, column] = value
    table.to_csv(root / name, index=False)


def test_label_outside_its_range_is_refused_or_skipped(monkeypatch, capsys, root):
    _edit(root, "FileList.csv", "EF", 8, 150.0)
    code, out, err = _run(monkeypatch, capsys, root, "--task", "ef_anomaly")
    assert code == 2 and "0X0008 (ef = 150 outside [0, 100])" in err and "--skip-bad" in err
    assert len(err.strip().splitlines()) == 1 and out == ""

    code, out, err = _run(monkeypatch, capsys, root, "--task", "ef_anomaly", "--skip-bad")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["notes"] == ["excluded 1 bad videos (--skip-bad): 0X0008"]
    assert "excluded 1 bad videos (--skip-bad): 0X0008" in err
    record = json.loads(open(summary["result_path"]).read())
    assert record["data_checks"]["excluded"] == {"0X0008": "(ef = 150 outside [0, 100])"}
    assert record["num_test_videos"] == 2


def test_non_numeric_label_is_refused(monkeypatch, capsys, root):
    _edit(root, "FileList.csv", "EF", 2, "abc")
    code, _, err = _run(monkeypatch, capsys, root, "--task", "ef")
    assert code == 2 and "label column 'ef' has non-numeric value 'abc'" in err


def test_truncated_video_is_refused_or_skipped(monkeypatch, capsys, root):
    write_avi(root / "Videos" / "0X0007.avi", np.full((5, 112, 112), 90, np.uint8))
    code, _, err = _run(monkeypatch, capsys, root, "--task", "ef")
    assert code == 2 and "0X0007 (decodes 5 of 12 listed frames: truncated?)" in err
    code, out, err = _run(monkeypatch, capsys, root, "--task", "ef", "--skip-bad")
    assert code == 0, err
    assert json.loads(out)["notes"] == ["excluded 1 bad videos (--skip-bad): 0X0007"]


def test_patient_in_two_splits_is_refused_unless_allowed(monkeypatch, capsys, root):
    _edit(root, "FileListExtra.csv", "PatientID", 8, "Ptrain0")
    code, _, err = _run(monkeypatch, capsys, root, "--task", "ef")
    assert code == 2 and "1 patients of echonet-dynamic appear in several splits (Ptrain0)" in err
    code, out, err = _run(monkeypatch, capsys, root, "--task", "ef", "--allow-patient-overlap")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["notes"] == ["1 patients appear in several splits (--allow-patient-overlap): Ptrain0"]
    assert json.loads(open(summary["result_path"]).read())["data_checks"]["patient_overlap"] == ["Ptrain0"]


def test_evaluating_on_pretrained_videos_warns_under_the_table(monkeypatch, capsys, root):
    pretrain_on_test = ("--set", "data.pretrain_splits=[train, test]", "--set", "pretrain.steps=2")
    code, out, err = _run(monkeypatch, capsys, root, "--task", "ef", *pretrain_on_test, method="videomae")
    assert code == 0, err
    assert json.loads(out)["evaluated_on_pretraining_videos"] is True
    assert err.index("result:") > err.index("were in the encoder's pretraining set")


def test_unknown_pretrain_split_gets_did_you_mean(monkeypatch, capsys, root):
    code, _, err = _run(monkeypatch, capsys, root, "--task", "ef", "--set", "data.pretrain_splits=[trian]")
    assert code == 2 and "unknown split 'trian' (did you mean 'train'?)" in err
