"""CAMUS (Leclerc et al., IEEE TMI 2019): apical 2- and 4-chamber half-cycle sequences (ED to ES) with expert label
maps, read from either public release. One table row per (patient, view) sequence, ``video_id`` =
``patientXXXX_2CH`` / ``patientXXXX_4CH``.

2023 NIfTI release (``CAMUS_public``)::

    <root>/database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_half_sequence.nii.gz     grey sequence
    <root>/database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_half_sequence_gt.nii.gz  label map of every frame
    <root>/database_nifti/patientXXXX/Info_{2CH,4CH}.cfg     "Key: value" lines (ED, ES, NbFrame, Sex, Age,
                                                              ImageQuality, EF, FrameRate)
    <root>/database_split/subgroup_{training,validation,testing}.txt   one patient per line (official split)

2019 MHD release (challenge ``training`` archive and its cross-validation lists)::

    <root>/training/patientXXXX/patientXXXX_{2CH,4CH}_sequence.mhd (+ .raw)       grey sequence
    <root>/training/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES}_gt.mhd (+ .raw)     label maps at ED and ES
    <root>/training/patientXXXX/Info_{2CH,4CH}.cfg     ED, ES, NbFrame, Sex, Age, ImageQuality, LVedv, LVesv, LVef
    <root>/listSubGroups/subGroup{1..10}_{training,validation,testing}.txt   ten cross-validation folds

(patient folders may also sit directly under ``<root>``, beside ``listSubGroups``). The release is recognised by
``database_nifti/`` (2023) or ``listSubGroups/`` (2019). Sources used for these facts: the vital library's CAMUS
generator (``listSubGroups/subGroup{fold}_{training,validation,testing}.txt``, ``Info_{view}.cfg`` as ``key: value``
lines with 1-based ``ED``/``ES``, label values 1 = LV, 2 = myocardium, 3 = left atrium), the EchoNet-CAMUS loader
of alexVyth/echonet_camus (``LVef``/``LVedv``/``LVesv``, ``ImageQuality`` Good/Medium/Poor) and public loaders of
the 2023 release (``database_nifti``, ``database_split/subgroup_*.txt``, cfg keys ``EF`` and ``FrameRate``; a
notebook there notes that nibabel's first two axes are width and height).

Orientation: SimpleITK's ``GetArrayFromImage`` gives ``(frames, rows, columns)`` with the sector apex at the top,
the orientation the CAMUS tutorials display; nibabel gives the voxel axes in the opposite order ``(columns, rows,
frames)``, so NIfTI arrays are transposed to match. Images and label maps go through the same transposition, so
masks stay aligned with frames. The affine is not applied (as in every public CAMUS loader).

Labels: ``ef`` (``EF`` in 2023, ``LVef`` in 2019), ``edv``/``esv`` (``LVedv``/``LVesv``, present when the cfg files
have them), ``quality`` (Poor 0, Medium 1, Good 2). The 2019 cfg files carry no frame rate, so ``fps`` is NaN there.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from echobench.data.base import VideoDataset
from echobench.errors import UserError

VIEWS = ("2CH", "4CH")
#: Split list name of each split, as the releases spell them.
SPLIT_FILES = {"train": "training", "val": "validation", "test": "testing"}
QUALITY_CODES = {"poor": 0, "medium": 1, "good": 2}
ALL_QUALITIES = frozenset(QUALITY_CODES)
CROSS_VALIDATION_FOLDS = range(1, 11)
#: cfg key of each label, per release.
LABEL_KEYS = {
    "nifti": {"ef": "EF", "edv": "LVedv", "esv": "LVesv"},
    "mhd": {"ef": "LVef", "edv": "LVedv", "esv": "LVesv"},
}


def read_cfg(path: Path) -> dict[str, str]:
    """``Key: value`` lines of a CAMUS ``Info_*.cfg`` file (blank lines ignored)."""
    info: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise UserError(f"{path} line {number} is not 'Key: value' ({line!r}); restore the file from the release")
        info[key.strip()] = value.strip()
    return info


def _to_uint8(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def read_volume(path: str | Path) -> np.ndarray:
    """A CAMUS NIfTI or MHD file as uint8 ``(frames, rows, columns)`` in image orientation (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CAMUS file {path} does not exist; restore it from the release")
    try:
        if path.name.endswith((".nii.gz", ".nii")):
            data = np.asarray(nib.load(path).dataobj)
            volume = np.transpose(data.reshape(data.shape[0], data.shape[1], -1), (2, 1, 0))
        else:
            volume = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            volume = volume.reshape(-1, *volume.shape[-2:])
    except (OSError, RuntimeError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as err:
        raise UserError(f"CAMUS file {path} is corrupt or unreadable ({err}); restore it from the release") from err
    return np.ascontiguousarray(_to_uint8(volume))


def _frame_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header only; (0, 0) for a missing file (the base class reports it)."""
    if not path.is_file():
        return 0, 0
    try:
        if path.name.endswith((".nii.gz", ".nii")):
            shape = nib.load(path).shape
            return int(shape[1]), int(shape[0])
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        width, height = reader.GetSize()[:2]
        return int(height), int(width)
    except (OSError, RuntimeError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as err:
        raise UserError(f"CAMUS file {path} has an unreadable header ({err}); restore it from the release") from err


class Camus(VideoDataset):
    """CAMUS, both views of every patient of the split lists, any image quality."""

    name: ClassVar[str] = "camus"
    version: ClassVar[str] = "1.0.0"
    layout: ClassVar[str] = (
        "2023 release: <root>/database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_half_sequence[_gt].nii.gz + "
        "Info_{2CH,4CH}.cfg and <root>/database_split/subgroup_{training,validation,testing}.txt; or 2019 release: "
        "<root>/training/patientXXXX/patientXXXX_{2CH,4CH}_sequence.mhd, _{ED,ES}_gt.mhd, Info_{2CH,4CH}.cfg and "
        "<root>/listSubGroups/subGroup<fold>_{training,validation,testing}.txt"
    )
    mask_classes: ClassVar[tuple[str, ...]] = ("lv", "myocardium", "la")
    #: Image qualities kept (lowercase); the subset variants below narrow it.
    qualities: ClassVar[frozenset[str]] = ALL_QUALITIES

    def __init__(self, root: Path, fold: int = 1) -> None:
        """``fold`` picks the 2019 release's cross-validation lists (1-10); the 2023 release has one split."""
        if fold not in CROSS_VALIDATION_FOLDS:
            raise UserError(f"CAMUS fold {fold!r} does not exist; use 1-10 (the 2019 release's listSubGroups)")
        resolved = Path(root).expanduser().resolve()
        has_nifti = (resolved / "database_nifti").is_dir()
        self.release = "nifti" if has_nifti or not (resolved / "listSubGroups").is_dir() else "mhd"
        self.fold = fold
        self._cfg_files: list[Path] = []
        super().__init__(root)

    # -- layout ---------------------------------------------------------------------------------------------------

    def _split_list(self, split: str) -> str:
        if self.release == "nifti":
            return f"database_split/subgroup_{SPLIT_FILES[split]}.txt"
        return f"listSubGroups/subGroup{self.fold}_{SPLIT_FILES[split]}.txt"

    def required_files(self) -> list[str]:
        return [self._split_list(split) for split in SPLIT_FILES]

    def label_files(self) -> list[Path]:
        return [self.root / self._split_list(split) for split in SPLIT_FILES] + self._cfg_files

    def _patient_dir(self, patient: str) -> Path:
        if self.release == "nifti":
            return self.root / "database_nifti" / patient
        training = self.root / "training" / patient
        return training if training.is_dir() else self.root / patient

    def _sequence_path(self, patient: str, view: str) -> Path:
        suffix = "half_sequence.nii.gz" if self.release == "nifti" else "sequence.mhd"
        return self._patient_dir(patient) / f"{patient}_{view}_{suffix}"

    def video_files(self) -> list[Path] | None:
        if self.qualities != ALL_QUALITIES:
            # Sequences of the other qualities are left out on purpose, not extra.
            return None
        if self.release == "nifti":
            return sorted((self.root / "database_nifti").glob("patient*/patient*_?CH_half_sequence.nii.gz"))
        folders = [self.root / "training", self.root]
        return sorted({p for folder in folders for p in folder.glob("patient*/patient*_?CH_sequence.mhd")})

    # -- table ----------------------------------------------------------------------------------------------------

    def _read_table(self) -> pd.DataFrame:
        rows = []
        for split in SPLIT_FILES:
            listed = (self.root / self._split_list(split)).read_text().split()
            for patient in listed:
                for view in VIEWS:
                    row = self._row(patient, view)
                    if row["quality"] in {QUALITY_CODES[q] for q in self.qualities}:
                        rows.append({**row, "split": split})
        if not rows:
            raise UserError(
                f"{self.name} dataset at {self.root}: the split lists name no sequence of quality "
                f"{'/'.join(sorted(self.qualities))}; check {self._split_list('train')}"
            )
        table = pd.DataFrame(rows)
        # A label no cfg file fills (volumes are absent from some copies) is not a label of this copy.
        unfilled = [label for label in LABEL_KEYS[self.release] if table[label].isna().all()]
        return table.drop(columns=unfilled)

    def _row(self, patient: str, view: str) -> dict[str, object]:
        cfg_path = self._patient_dir(patient) / f"Info_{view}.cfg"
        if not cfg_path.is_file():
            raise UserError(f"{self.name} dataset at {self.root}: missing {cfg_path}; expected layout: {self.layout}")
        self._cfg_files.append(cfg_path)
        info = read_cfg(cfg_path)
        path = self._sequence_path(patient, view)
        height, width = _frame_size(path)
        quality = info.get("ImageQuality", "").lower()
        if quality not in QUALITY_CODES:
            raise UserError(f"{cfg_path}: ImageQuality {info.get('ImageQuality')!r} is not Good, Medium or Poor")
        row: dict[str, object] = {
            "video_id": f"{patient}_{view}",
            "path": str(path),
            "patient_id": patient,
            "num_frames": self._integer(info, "NbFrame", cfg_path),
            "fps": float(info.get("FrameRate", "nan")),
            "height": height,
            "width": width,
            # The cfg files count frames from 1.
            "ed_frame": self._integer(info, "ED", cfg_path) - 1,
            "es_frame": self._integer(info, "ES", cfg_path) - 1,
        }
        for label, key in LABEL_KEYS[self.release].items():
            row[label] = info.get(key)
        row["quality"] = QUALITY_CODES[quality]
        return row

    @staticmethod
    def _integer(info: dict[str, str], key: str, path: Path) -> int:
        try:
            return int(info[key])
        except (KeyError, ValueError):
            raise UserError(f"{path}: {key} is missing or not an integer; restore the file from the release") from None

    # -- frames and label maps ------------------------------------------------------------------------------------

    def read_frames(self, path: str) -> np.ndarray:
        return read_volume(path)

    def tracings(self, video_id: str) -> dict[int, np.ndarray]:
        """CAMUS ships label maps, not contours: see :meth:`masks`."""
        self._locate(video_id)
        return {}

    def masks(self, video_id: str) -> dict[int, np.ndarray]:
        """Label maps (1 LV, 2 myocardium, 3 LA) at the ED and ES frames, ``(height, width)`` uint8."""
        row = self._locate(video_id)
        patient, view = row["patient_id"], video_id.rsplit("_", 1)[1]
        ed, es = int(row["ed_frame"]), int(row["es_frame"])
        folder = self._patient_dir(patient)
        if self.release == "nifti":
            labels = read_volume(folder / f"{patient}_{view}_half_sequence_gt.nii.gz")
            return {frame: labels[frame] for frame in (ed, es) if 0 <= frame < len(labels)}
        phases = ((ed, "ED"), (es, "ES"))
        return {frame: read_volume(folder / f"{patient}_{view}_{phase}_gt.mhd")[0] for frame, phase in phases}

    def _locate(self, video_id: str) -> pd.Series:
        rows = self.table.index[self.table["video_id"] == video_id]
        if len(rows) == 0:
            raise KeyError(f"{video_id!r} is not a video of {self.name} at {self.root}")
        return self.table.loc[rows[0]]


class CamusGoodMedium(Camus):
    """CAMUS sequences of good or medium image quality only."""

    name: ClassVar[str] = "camus-good-medium"
    qualities: ClassVar[frozenset[str]] = frozenset({"good", "medium"})


class CamusPoor(Camus):
    """CAMUS sequences of poor image quality only."""

    name: ClassVar[str] = "camus-poor"
    qualities: ClassVar[frozenset[str]] = frozenset({"poor"})
