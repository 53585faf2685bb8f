"""Task label rules, boundaries, missing labels and name lookup."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echobench.data.tasks import TASKS, get_task
from echobench.errors import UserError

EF = [44.99, 45.0, 49.99, 50.0, 50.01, 75.0, 75.01]


def test_ef_binary_boundary_is_inclusive_at_50() -> None:
    y, valid = get_task("ef_binary").targets(pd.DataFrame({"ef": EF}))
    assert y.dtype == np.int64 and valid.all()
    assert y.tolist() == [1, 1, 1, 1, 0, 0, 0]


def test_ef_anomaly_normal_range_is_45_to_75_inclusive() -> None:
    y, _ = get_task("ef_anomaly").targets(pd.DataFrame({"ef": EF}))
    assert y.tolist() == [1, 0, 0, 0, 0, 0, 1]


@pytest.mark.parametrize("name", ["ef", "esv", "edv"])
def test_regression_targets_are_the_column(name: str) -> None:
    values = [10.5, 80.25, 33.0]
    y, valid = get_task(name).targets(pd.DataFrame({name: values}))
    assert y.dtype == np.float64 and valid.all()
    np.testing.assert_array_equal(y, values)


def test_missing_labels_are_flagged_not_dropped() -> None:
    table = pd.DataFrame({"ef": [30.0, np.nan, 60.0]})
    y, valid = get_task("ef_anomaly").targets(table)
    assert valid.tolist() == [True, False, True]
    assert y.tolist() == [1, -1, 0]
    y, valid = get_task("ef").targets(table)
    assert valid.tolist() == [True, False, True] and np.isnan(y[1])


def test_missing_column_names_dataset_task_and_column() -> None:
    with pytest.raises(UserError, match="dataset camus has no labels for task mi \\(needs column 'mi'\\)"):
        get_task("mi").targets(pd.DataFrame({"ef": [50.0]}), dataset="camus")


def test_all_missing_column_is_an_error() -> None:
    with pytest.raises(UserError, match="has no labels for task esv"):
        get_task("esv").targets(pd.DataFrame({"esv": [np.nan, np.nan]}))


def test_mi_reads_binary_column() -> None:
    y, valid = get_task("mi").targets(pd.DataFrame({"mi": [True, False, None]}))
    assert y.tolist() == [1, 0, -1] and valid.tolist() == [True, True, False]
    with pytest.raises(UserError, match="binary column"):
        get_task("mi").targets(pd.DataFrame({"mi": [0, 2]}))


def test_non_numeric_label_is_an_error() -> None:
    with pytest.raises(UserError, match="non-numeric value 'high'"):
        get_task("ef").targets(pd.DataFrame({"ef": [55.0, "high"]}))


def test_ef_as_fraction_is_rejected() -> None:
    with pytest.raises(UserError, match="fraction"):
        get_task("ef_binary").targets(pd.DataFrame({"ef": [0.45, 0.6]}))


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(UserError, match="unknown task 'ef_anomally' \\(did you mean 'ef_anomaly'\\?\\)"):
        get_task("ef_anomally")


def test_selection_metric_follows_task_kind() -> None:
    for task in TASKS.values():
        if task.is_classification:
            assert (task.primary_metric, task.higher_is_better, len(task.classes)) == ("balanced_accuracy", True, 2)
        elif task.kind == "segmentation":
            assert (task.primary_metric, task.higher_is_better) == ("dice", True)
        else:
            assert (task.primary_metric, task.higher_is_better, task.classes) == ("mae", False, ())
    lvh = {"ivsd", "ivss", "lvidd", "lvids", "lvpwd", "lvpws"}
    assert set(TASKS) == {"ef", "ef_binary", "ef_anomaly", "esv", "edv", "mi", "lv_seg", "rvef", "rv_anomaly", *lvh}
