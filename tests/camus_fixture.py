"""Tiny CAMUS folders in both release formats: a dark LV cavity inside a bright myocardial ring, with a dark left
atrium below it, in non-square frames (rows != columns, so a transposed reader is caught).

The cavity shrinks from ED (frame 0) to ES (last frame) as in CAMUS half sequences. Label maps mark the cavity 1,
the ring 2 and the atrium 3, pixel for pixel where the image draws them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

HEIGHT, WIDTH = 48, 40
FRAMES = 12
#: (patient, split list, EF, image quality): the 2023 release's lists use these splits.
PATIENTS = (
    ("patient0001", "training", 30.0, "Good"),
    ("patient0002", "training", 60.0, "Medium"),
    ("patient0003", "training", 80.0, "Poor"),
    ("patient0004", "validation", 35.0, "Good"),
    ("patient0005", "validation", 62.0, "Medium"),
    ("patient0006", "testing", 40.0, "Good"),
    ("patient0007", "testing", 66.0, "Poor"),
)
SUBSETS = ("training", "validation", "testing")


def sequence(seed: int, frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Grey frames and label maps ``(frames, HEIGHT, WIDTH)`` uint8 of one half cycle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    cx, cy = WIDTH / 2 + rng.uniform(-2, 2), HEIGHT * 0.4
    images, labels = [], []
    for t in range(frames):
        scale = 1.0 - 0.3 * t / max(frames - 1, 1)
        a, b = 7.0 * scale, 11.0 * scale
        r = np.sqrt(((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2)
        cavity, ring = r < 1.0, (r >= 1.0) & (r < 1.4)
        atrium = (((xx - cx) / 6.0) ** 2 + ((yy - HEIGHT * 0.8) / 5.0) ** 2 < 1.0) & ~ring & ~cavity
        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        label[cavity], label[ring], label[atrium] = 1, 2, 3
        image = np.where(ring, 200.0, np.where(cavity | atrium, 15.0, 90.0)) + rng.normal(0, 5, (HEIGHT, WIDTH))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        labels.append(label)
    return np.stack(images), np.stack(labels)


def _cfg(ed: int, es: int, frames: int, quality: str, ef: float, release: str) -> str:
    common = f"ED: {ed}\nES: {es}\nNbFrame: {frames}\nSex: F\nAge: 60\nImageQuality: {quality}\n"
    if release == "nifti":
        return common + f"EF: {ef}\nFrameRate: 25.0\n"
    edv = 100.0
    return common + f"LVedv: {edv}\nLVesv: {edv * (1 - ef / 100):.2f}\nLVef: {ef}\n"


def _nifti(path: Path, volume: np.ndarray) -> None:
    # NIfTI voxel axes are (column, row, frame): the transpose of the (frame, row, column) arrays.
    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.diag([0.3, 0.3, 1.0, 1.0])), path)


def write_camus_nifti(root: Path, patients: tuple = PATIENTS) -> Path:
    """The 2023 release layout under ``root``; returns ``root``."""
    root = Path(root)
    (root / "database_split").mkdir(parents=True, exist_ok=True)
    for subset in SUBSETS:
        names = [p for p, s, *_ in patients if s == subset]
        (root / "database_split" / f"subgroup_{subset}.txt").write_text("".join(f"{n}\n" for n in names))
    for index, (patient, _, ef, quality) in enumerate(patients):
        folder = root / "database_nifti" / patient
        folder.mkdir(parents=True, exist_ok=True)
        for v, view in enumerate(("2CH", "4CH")):
            images, labels = sequence(seed=10 * index + v)
            _nifti(folder / f"{patient}_{view}_half_sequence.nii.gz", images)
            _nifti(folder / f"{patient}_{view}_half_sequence_gt.nii.gz", labels)
            (folder / f"Info_{view}.cfg").write_text(_cfg(1, FRAMES, FRAMES, quality, ef, "nifti"))
    return root


def write_camus_mhd(root: Path, patients: tuple = PATIENTS, folds: int = 2) -> Path:
    """The 2019 release layout under ``root`` (patients in ``training/``); fold ``k`` tests on patient k-1's
    neighbours so folds differ. Returns ``root``."""
    root = Path(root)
    (root / "listSubGroups").mkdir(parents=True, exist_ok=True)
    names = [p for p, *_ in patients]
    for fold in range(1, folds + 1):
        shift = names[fold - 1 :] + names[: fold - 1]
        lists = {"training": shift[:-3], "validation": shift[-3:-2], "testing": shift[-2:]}
        for subset, members in lists.items():
            (root / "listSubGroups" / f"subGroup{fold}_{subset}.txt").write_text("".join(f"{n}\n" for n in members))
    for index, (patient, _, ef, quality) in enumerate(patients):
        folder = root / "training" / patient
        folder.mkdir(parents=True, exist_ok=True)
        for v, view in enumerate(("2CH", "4CH")):
            images, labels = sequence(seed=10 * index + v)
            sitk.WriteImage(sitk.GetImageFromArray(images), str(folder / f"{patient}_{view}_sequence.mhd"))
            sitk.WriteImage(sitk.GetImageFromArray(labels[:1]), str(folder / f"{patient}_{view}_ED_gt.mhd"))
            sitk.WriteImage(sitk.GetImageFromArray(labels[-1:]), str(folder / f"{patient}_{view}_ES_gt.mhd"))
            (folder / f"Info_{view}.cfg").write_text(_cfg(1, FRAMES, FRAMES, quality, ef, "mhd"))
    return root
