"""DICOM cines to grey frames: colour models, MONOCHROME1, ultrasound region selection, header facts, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixture import luma, write_dicom
from pydicom.dataset import Dataset

from echobench.data.dicom_io import dicom_info, read_dicom_video, ultrasound_region
from echobench.errors import UserError

FRAMES = np.random.default_rng(0).integers(0, 256, size=(4, 12, 18), dtype=np.uint8)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "RGB", "YBR_FULL"])
def test_grey_frames_from_every_colour_model(tmp_path: Path, photometric: str) -> None:
    write_dicom(tmp_path / "a.dcm", FRAMES, photometric=photometric)
    np.testing.assert_array_equal(read_dicom_video(tmp_path / "a.dcm"), FRAMES)


def test_coloured_overlay_becomes_its_luma(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", FRAMES, photometric="RGB")
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    rgb = np.repeat(FRAMES[..., None], 3, axis=-1)
    rgb[:, 2, :] = (0, 255, 0)  # a green ECG trace
    ds.PixelData = rgb.tobytes()
    ds.save_as(tmp_path / "a.dcm")
    out = read_dicom_video(tmp_path / "a.dcm")
    np.testing.assert_array_equal(out, luma(rgb))
    assert out[0, 2, 0] == 150  # 0.587 * 255


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", FRAMES, photometric="MONOCHROME2")
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "a.dcm")
    np.testing.assert_array_equal(read_dicom_video(tmp_path / "a.dcm"), 255 - FRAMES)


def test_region_cut_and_header_facts(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", FRAMES, fps=25.0, region=(3, 2, 14, 10))
    np.testing.assert_array_equal(read_dicom_video(tmp_path / "a.dcm"), FRAMES[:, 2:11, 3:15])
    info = dicom_info(tmp_path / "a.dcm")
    assert (info.num_frames, info.height, info.width) == (4, 9, 12)
    assert info.fps == pytest.approx(25.0)


def test_largest_2d_region_wins() -> None:
    def region(x0: int, y0: int, x1: int, y1: int, spatial: int) -> Dataset:
        item = Dataset()
        item.RegionSpatialFormat = spatial
        item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
        return item

    ds = Dataset()
    # A large spectral-Doppler strip (format 3) and two 2D regions: the larger 2D one is the image.
    ds.SequenceOfUltrasoundRegions = [region(0, 50, 99, 99, 3), region(0, 0, 9, 9, 1), region(10, 0, 59, 39, 1)]
    assert ultrasound_region(ds) == (0, 40, 10, 60)
    assert ultrasound_region(Dataset()) is None


def test_unreadable_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_dicom_video(tmp_path / "missing.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom at all")
    with pytest.raises(UserError, match="junk.dcm"):
        dicom_info(tmp_path / "junk.dcm")
