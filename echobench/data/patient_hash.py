"""Deterministic patient-level split assignment for datasets that ship no split (or no validation split)."""

from __future__ import annotations

import hashlib


def patient_unit(patient_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by ``(salt, patient_id)``: the same on every machine, run and Python version.

    ``salt`` (the dataset's name) keeps the assignments of different datasets independent.
    """
    digest = hashlib.sha256(f"{salt}\0{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hashed_split(patient_id: str, salt: str, val: float, test: float) -> str:
    """``train``, ``val`` or ``test`` for a patient: the first ``test`` share of the unit interval is test, the next
    ``val`` share validation, the rest training."""
    unit = patient_unit(patient_id, salt)
    return "test" if unit < test else "val" if unit < test + val else "train"
