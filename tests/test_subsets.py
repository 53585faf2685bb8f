"""Label-fraction subsets and k-fold splits: patient grouping, nesting, stratification, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from echobench.data.subsets import kfold_patient_splits, label_fraction_subsets
from echobench.errors import UserError

FRACTIONS = (0.1, 0.2, 0.5, 1.0)
SEEDS = (0, 1, 2)


def _cohort(n_patients: int = 60, positive_share: float = 0.25) -> tuple[list[str], np.ndarray]:
    """Patients with 1-3 videos each and a patient-level binary label (the first ``positive_share`` positive)."""
    videos = np.random.default_rng(7).integers(1, 4, size=n_patients)
    patient_label = (np.arange(n_patients) < round(positive_share * n_patients)).astype(np.int64)
    rows = np.repeat(np.arange(n_patients), videos)
    # Interleave rows so that a patient's videos are not adjacent.
    rows = rows[np.random.default_rng(8).permutation(len(rows))]
    return [f"patient{p}" for p in rows], patient_label[rows]


def _patients(pids: list[str], rows: np.ndarray) -> set[str]:
    return {pids[i] for i in rows}


def test_subsets_are_patient_grouped():
    pids, y = _cohort()
    for rows in label_fraction_subsets(pids, y, FRACTIONS, SEEDS, stratify=True).values():
        inside = _patients(pids, rows)
        outside = _patients(pids, np.setdiff1d(np.arange(len(pids)), rows))
        assert not inside & outside


def test_subsets_are_nested_per_seed_and_differ_between_seeds():
    pids, y = _cohort()
    subsets = label_fraction_subsets(pids, y, FRACTIONS, SEEDS, stratify=True)
    for seed in SEEDS:
        for small, large in zip(FRACTIONS, FRACTIONS[1:], strict=False):
            assert set(subsets[(small, seed)]) < set(subsets[(large, seed)])
    assert set(subsets[(0.2, 0)]) != set(subsets[(0.2, 1)])
    assert set(subsets[(0.2, 1)]) != set(subsets[(0.2, 2)])


def test_subset_sizes_and_full_fraction():
    pids, y = _cohort()
    subsets = label_fraction_subsets(pids, y, FRACTIONS, SEEDS, stratify=True)
    for (fraction, _), rows in subsets.items():
        assert len(rows) >= fraction * len(y)
        # A prefix stops at the first patient reaching the fraction; a patient has at most 3 videos.
        assert len(rows) < fraction * len(y) + 3
        assert np.all(np.diff(rows) > 0)
    for seed in SEEDS:
        np.testing.assert_array_equal(subsets[(1.0, seed)], np.arange(len(y)))


def test_subsets_are_deterministic():
    pids, y = _cohort()
    a = label_fraction_subsets(pids, y, FRACTIONS, SEEDS, stratify=True)
    b = label_fraction_subsets(pids, y, FRACTIONS, SEEDS, stratify=True)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_class_proportions_follow_the_full_set():
    pids, y = _cohort(n_patients=80, positive_share=0.25)
    patient_share = 0.25
    for (fraction, _), rows in label_fraction_subsets(pids, y, (0.2, 0.5), SEEDS, stratify=True).items():
        chosen = sorted(_patients(pids, rows))
        positives = sum(y[pids.index(p)] for p in chosen)
        # Interleaving keeps each class within one patient of its share of the chosen patients.
        assert abs(positives - patient_share * len(chosen)) <= 1.0, fraction


def test_every_class_appears_even_in_a_tiny_fraction():
    # 2 positive patients of 50: 2 % of the rows would usually miss them without the class cover.
    pids = [f"p{i}" for i in range(50)]
    y = np.zeros(50, dtype=np.int64)
    y[[17, 33]] = 1
    for (fraction, _), rows in label_fraction_subsets(pids, y, (0.02, 0.1), range(10), stratify=True).items():
        assert set(y[rows]) == {0, 1}, fraction


def test_a_class_held_only_by_a_mixed_patient_is_covered():
    # Patient "m" has videos of class 0 and 2; class 2 exists nowhere else, and m's majority class is 0.
    pids = [f"p{i}" for i in range(30)] + ["m", "m", "m"]
    y = np.array([i % 2 for i in range(30)] + [0, 0, 2], dtype=np.int64)
    for rows in label_fraction_subsets(pids, y, (0.05,), range(5), stratify=True).values():
        assert set(y[rows]) == {0, 1, 2}


def test_regression_prefix_takes_one_patient_per_quintile():
    # 50 single-video patients with targets 0..49: quintiles are {0..9}, {10..19}, ... A 10 % prefix = 5 patients.
    targets = np.random.default_rng(3).permutation(50).astype(np.float64)
    pids = [f"p{i}" for i in range(50)]
    for rows in label_fraction_subsets(pids, targets, (0.1,), SEEDS, stratify=True).values():
        assert sorted(targets[rows] // 10) == [0, 1, 2, 3, 4]


def test_unstratified_subsets_are_grouped_and_nested():
    pids, y = _cohort()
    subsets = label_fraction_subsets(pids, y.astype(np.float64), FRACTIONS, (0,), stratify=False)
    for small, large in zip(FRACTIONS, FRACTIONS[1:], strict=False):
        assert set(subsets[(small, 0)]) < set(subsets[(large, 0)])
    rows = subsets[(0.2, 0)]
    assert not _patients(pids, rows) & _patients(pids, np.setdiff1d(np.arange(len(y)), rows))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fraction_is_a_user_error(fraction):
    pids, y = _cohort()
    with pytest.raises(UserError, match=r"fraction must be in \(0, 1\]"):
        label_fraction_subsets(pids, y, (0.5, fraction), (0,), stratify=True)


def test_missing_regression_targets_are_a_user_error():
    with pytest.raises(UserError, match="missing values"):
        label_fraction_subsets(["a", "b"], np.array([1.0, np.nan]), (0.5,), (0,), stratify=True)


def test_kfold_holds_every_row_out_once_and_keeps_patients_together():
    pids, y = _cohort()
    folds = kfold_patient_splits(pids, y, k=5, seed=0, stratify=True)
    assert len(folds) == 5
    held = np.concatenate([held_out for _, held_out in folds])
    np.testing.assert_array_equal(np.sort(held), np.arange(len(y)))
    for train, held_out in folds:
        np.testing.assert_array_equal(np.union1d(train, held_out), np.arange(len(y)))
        assert not _patients(pids, train) & _patients(pids, held_out)


def test_kfold_is_stratified():
    pids, y = _cohort(n_patients=100, positive_share=0.2)
    for seed in (0, 1):
        for _, held_out in kfold_patient_splits(pids, y, k=4, seed=seed, stratify=True):
            assert abs(y[held_out].mean() - y.mean()) < 0.05


def test_kfold_regression_and_unstratified():
    pids, y = _cohort()
    targets = np.random.default_rng(1).normal(55.0, 10.0, len(y))
    for stratify in (True, False):
        folds = kfold_patient_splits(pids, targets, k=3, seed=0, stratify=stratify)
        held = np.concatenate([held_out for _, held_out in folds])
        np.testing.assert_array_equal(np.sort(held), np.arange(len(y)))
        for train, held_out in folds:
            assert not _patients(pids, train) & _patients(pids, held_out)


def test_kfold_seed_changes_the_folds():
    pids, y = _cohort()
    a = kfold_patient_splits(pids, y, k=5, seed=0, stratify=True)
    b = kfold_patient_splits(pids, y, k=5, seed=1, stratify=True)
    assert any(not np.array_equal(fa[1], fb[1]) for fa, fb in zip(a, b, strict=True))


@pytest.mark.parametrize("k", [1, 61])
def test_impossible_fold_count_is_a_user_error(k):
    pids, y = _cohort(n_patients=60)
    with pytest.raises(UserError, match=rf"cannot make {k} folds from 60 patients; use --set protocol.folds="):
        kfold_patient_splits(pids, y, k=k, seed=0, stratify=True)


def test_stratified_folds_that_no_stratum_can_fill_are_a_user_error_not_a_crash() -> None:
    # Four patients, one video each, four classes: no stratum holds 2 videos, so no 2-fold split exists.
    patients = ["a", "b", "c", "d"]
    with pytest.raises(UserError, match="largest label stratum has 1 videos"):
        kfold_patient_splits(patients, np.array([0, 1, 2, 3]), 2, 0, stratify=True)
    folds = kfold_patient_splits(patients, np.array([0, 0, 1, 1]), 2, 0, stratify=True)
    assert sorted(np.concatenate([held for _, held in folds]).tolist()) == [0, 1, 2, 3]
