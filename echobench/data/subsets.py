"""Patient-grouped training subsets: nested label fractions and k-fold splits.

Both functions work on the rows a caller passes (one row per video) and never split a patient: a patient's
videos are all inside a subset (or fold) or all outside it. Targets with an integer (or bool) dtype are class
indices and are stratified by class; float targets are regression values and are stratified by quantile bins
of each patient's mean target. A patient whose videos carry different classes is stratified by its most
frequent class (the smaller index among ties).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from echobench.errors import UserError

#: Quantile bins a regression target is stratified by.
REGRESSION_BINS = 5


def label_fraction_subsets(
    patient_ids: Sequence[str],
    targets: np.ndarray,
    fractions: Sequence[float],
    seeds: Sequence[int],
    stratify: bool,
) -> dict[tuple[float, int], np.ndarray]:
    """Sorted row indices of the labelled rows for every ``(fraction, seed)``.

    Each seed fixes one ordering of the patients and every fraction takes a prefix of it, so for one seed the
    subsets are nested (10 % ⊂ 20 % ⊂ 50 % ⊂ 100 %). A prefix is the shortest one holding at least
    ``fraction`` of the rows (fractions count videos, not patients); fraction 1.0 is every row.

    With ``stratify`` the ordering interleaves the strata (classes, or target quantile bins) so that every
    prefix keeps the full set's stratum proportions up to one patient per stratum: a stratum's ``i``-th
    patient (of ``n_s``, in seeded random order) sits at position key ``i / n_s``, ties broken at random.
    For class targets the ordering starts with one patient holding each class present, so every subset
    contains every class. Without ``stratify`` the ordering is a plain seeded shuffle of the patients.
    """
    for fraction in fractions:
        if not (isinstance(fraction, numbers.Real) and 0.0 < float(fraction) <= 1.0):
            raise UserError(f"label fraction {fraction!r} is invalid: fraction must be in (0, 1]; e.g. 0.1 for 10 %")
    codes, row_targets = _check_rows(patient_ids, targets)
    n_patients = int(codes.max()) + 1
    rows_per_patient = np.bincount(codes, minlength=n_patients)
    strata = _patient_strata(codes, row_targets) if stratify else np.zeros(n_patients, dtype=np.int64)
    subsets: dict[tuple[float, int], np.ndarray] = {}
    for seed in seeds:
        order, cover = _patient_order(codes, row_targets, strata, stratify, np.random.default_rng(seed))
        cumulative_rows = np.cumsum(rows_per_patient[order])
        for fraction in fractions:
            # The small slack keeps fraction * rows that is an integer in float arithmetic from needing one more.
            needed = fraction * len(codes) - 1e-9
            length = max(int(np.searchsorted(cumulative_rows, needed)) + 1, cover)
            chosen = np.zeros(n_patients, dtype=bool)
            chosen[order[:length]] = True
            subsets[(fraction, seed)] = np.flatnonzero(chosen[codes])
    return subsets


def kfold_patient_splits(
    patient_ids: Sequence[str],
    targets: np.ndarray,
    k: int,
    seed: int,
    stratify: bool,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` pairs of sorted row indices ``(train, held_out)``; every row is held out exactly once.

    Patients never straddle a fold boundary. ``stratify`` uses scikit-learn's ``StratifiedGroupKFold`` on the
    patient strata (see the module docstring), otherwise ``GroupKFold``; both shuffle the patients with
    ``seed``.
    """
    codes, row_targets = _check_rows(patient_ids, targets)
    n_patients = int(codes.max()) + 1
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n_patients:
        raise UserError(
            f"cannot make {k} folds from {n_patients} patients; use --set protocol.folds=K with 2 <= K <= {n_patients}"
        )
    rows = np.zeros((len(codes), 1))
    if stratify:
        strata = _patient_strata(codes, row_targets)
        largest = int(np.bincount(np.unique(strata[codes], return_inverse=True)[1]).max())
        if largest < k:
            # scikit-learn refuses (a ValueError) when no stratum has k videos.
            raise UserError(
                f"cannot make {k} stratified folds: the largest label stratum has {largest} videos; use --set "
                f"protocol.folds=K with 2 <= K <= {largest}, or a dataset with more patients"
            )
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # A stratum smaller than k cannot appear in every fold; that is expected for rare classes.
            warnings.filterwarnings("ignore", message="The least populated class")
            folds = list(splitter.split(rows, strata[codes], groups=codes))
    else:
        folds = list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(rows, groups=codes))
    return [(np.sort(train), np.sort(held_out)) for train, held_out in folds]


def _check_rows(patient_ids: Sequence[str], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer patient codes (0..P-1, in first-seen order) and the targets as an array."""
    targets = np.asarray(targets)
    if len(patient_ids) != len(targets):
        raise ValueError(f"patient_ids ({len(patient_ids)}) and targets ({len(targets)}) must have one entry per row")
    if len(targets) == 0:
        raise UserError("no labelled training rows to subsample; check the dataset split and task labels")
    if not _is_class_target(targets) and not np.isfinite(targets.astype(np.float64)).all():
        raise UserError("training targets contain missing values; drop unlabelled videos before subsampling")
    codes, _ = pd.factorize(pd.Series(list(patient_ids), dtype=str))
    return codes.astype(np.int64), targets


def _is_class_target(targets: np.ndarray) -> bool:
    return np.issubdtype(targets.dtype, np.integer) or targets.dtype == np.bool_


def _patient_strata(codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """One stratum index per patient: its most frequent class, or the quantile bin of its mean target."""
    n_patients = int(codes.max()) + 1
    if _is_class_target(targets):
        classes, class_idx = np.unique(targets, return_inverse=True)
        counts = np.zeros((n_patients, len(classes)), dtype=np.int64)
        np.add.at(counts, (codes, class_idx), 1)
        return counts.argmax(axis=1)
    means = np.bincount(codes, weights=targets.astype(np.float64)) / np.bincount(codes)
    bins = min(REGRESSION_BINS, n_patients)
    # Ranking first makes the bins equal-sized even when many patients share a target value.
    ranks = pd.Series(means).rank(method="first")
    return pd.qcut(ranks, bins, labels=False).to_numpy(dtype=np.int64)


def _patient_order(
    codes: np.ndarray, targets: np.ndarray, strata: np.ndarray, stratify: bool, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """A seeded ordering of the patients and how many leading patients every subset must keep.

    The leading ``cover`` patients hold every class present (class targets with ``stratify`` only).
    """
    n_patients = len(strata)
    shuffled = rng.permutation(n_patients)
    if not stratify:
        return shuffled, 1
    stratum = strata[shuffled]
    sizes = np.bincount(stratum)
    # Rank of each shuffled patient inside its stratum: position minus the position of its stratum's first.
    by_stratum = np.argsort(stratum, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(n_patients, dtype=np.int64)
    rank[by_stratum] = np.arange(n_patients) - starts[stratum[by_stratum]]
    # The stable sort keeps the random order among equal keys.
    order = shuffled[np.argsort(rank / sizes[stratum], kind="stable")]
    if not _is_class_target(targets):
        return order, 1
    return _cover_classes_first(order, codes, targets)


def _cover_classes_first(order: np.ndarray, codes: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, int]:
    """Move, for each class no earlier patient holds, the first patient holding it to the front."""
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    front: list[int] = []
    covered: set[int] = set()
    for cls in np.unique(targets):
        if int(cls) in covered:
            continue
        holders = codes[targets == cls]
        patient = int(holders[np.argmin(position[holders])])
        front.append(patient)
        covered.update(int(c) for c in np.unique(targets[codes == patient]))
    front_sorted = sorted(front, key=lambda p: position[p])
    rest = order[~np.isin(order, front_sorted)]
    return np.concatenate([np.asarray(front_sorted, dtype=np.int64), rest]), max(len(front_sorted), 1)
