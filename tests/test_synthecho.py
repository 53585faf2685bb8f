"""SynthEcho: determinism, the EchoNet-Dynamic format, labels recomputed from the written tracings, the
physiology (volume curve, EF population, single-frame weakness, MI) and safe, atomic generation."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_score

from echobench.data.echonet import EchoNetDynamic
from echobench.data.geometry import polygon_mask
from echobench.data.synthecho import generate, physiology, writer
from echobench.data.synthecho.generate import SYNTHECHO_VERSION, synthesize
from echobench.data.synthecho.render import lv_masks, render_video
from echobench.errors import UserError

VIDEOS, FRAMES = 8, 48
CSVS = ("FileList.csv", "VolumeTracings.csv", "FileListExtra.csv")
SPACING_ML = 0.15**3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth") / "se", videos=VIDEOS, frames=FRAMES, progress=False)


@pytest.fixture(scope="module")
def population() -> list[physiology.VideoSpec]:
    return physiology.sample_dataset(0, 400, 64)


def read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype={"FileName": str, "PatientID": str})


# -- determinism ----------------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_other_seeds_differ(root: Path, tmp_path: Path) -> None:
    again = synthesize(tmp_path / "again", videos=VIDEOS, frames=FRAMES, progress=False)
    for name in CSVS:
        assert (root / name).read_bytes() == (again / name).read_bytes()
    for avi in sorted((root / "Videos").iterdir()):
        assert avi.read_bytes() == (again / "Videos" / avi.name).read_bytes()
    other = synthesize(tmp_path / "other", videos=VIDEOS, frames=FRAMES, seed=1, progress=False)
    assert (root / "FileList.csv").read_bytes() != (other / "FileList.csv").read_bytes()


def test_video_i_does_not_depend_on_the_number_of_videos(root: Path, tmp_path: Path) -> None:
    fewer = synthesize(tmp_path / "fewer", videos=4, frames=FRAMES, progress=False)
    assert read(fewer, "FileList.csv").equals(read(root, "FileList.csv").head(4))
    for name in read(fewer, "FileList.csv")["FileName"]:
        assert (fewer / "Videos" / f"{name}.avi").read_bytes() == (root / "Videos" / f"{name}.avi").read_bytes()


def test_worker_processes_give_the_same_output(root: Path, tmp_path: Path) -> None:
    parallel = synthesize(tmp_path / "parallel", videos=VIDEOS, frames=FRAMES, progress=False, workers=2)
    for name in CSVS:
        assert (root / name).read_bytes() == (parallel / name).read_bytes()
    for avi in sorted((root / "Videos").iterdir()):
        assert avi.read_bytes() == (parallel / "Videos" / avi.name).read_bytes()


# -- on-disk format -------------------------------------------------------------------------------------------


def test_echonet_format(root: Path) -> None:
    files, traces, extra = read(root, "FileList.csv"), read(root, "VolumeTracings.csv"), read(root, "FileListExtra.csv")
    assert list(files.columns) == [
        "FileName",
        "EF",
        "ESV",
        "EDV",
        "FrameHeight",
        "FrameWidth",
        "FPS",
        "NumberOfFrames",
        "Split",
    ]
    assert list(traces.columns) == ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
    assert list(extra.columns) == ["FileName", "PatientID", "MI", "HeartRate", "EDFrame", "ESFrame"]
    assert len(files) == VIDEOS and extra["FileName"].tolist() == files["FileName"].tolist()
    assert not files["FileName"].str.contains(".", regex=False).any()
    assert set(files["Split"]) == {"TRAIN", "VAL", "TEST"}
    assert (files[["FrameHeight", "FrameWidth"]] == 112).all().all()
    assert (files["NumberOfFrames"] == FRAMES).all() and files["FPS"].between(30, 60).all()
    assert sorted(p.name for p in (root / "Videos").iterdir()) == sorted(files["FileName"] + ".avi")
    assert set(traces["FileName"]) == set(files["FileName"] + ".avi")
    assert set(extra["MI"]) <= {0, 1} and extra["HeartRate"].between(48, 120).all()
    assert writer.read_manifest(root) == {
        "generator": "synthecho",
        "version": SYNTHECHO_VERSION,
        "seed": 0,
        "videos": VIDEOS,
        "frames": FRAMES,
        "pixel_spacing_cm": 0.15,
    }
    for name, ed, es in extra[["FileName", "EDFrame", "ESFrame"]].itertuples(index=False):
        rows = traces[traces["FileName"] == f"{name}.avi"]
        # ES rows first, ED last (EchoNet's own loader takes the last traced frame as the large one).
        assert rows["Frame"].tolist() == [es] * 21 + [ed] * 21
    # Patient-level splits: all of a patient's 1-3 videos share one split.
    merged = files.merge(extra, on="FileName")
    assert merged.groupby("PatientID")["Split"].nunique().eq(1).all()
    assert merged.groupby("PatientID").size().between(1, 3).all()


def test_every_video_decodes_with_opencv_and_pyav(root: Path) -> None:
    files = read(root, "FileList.csv")
    for name, frames, fps in files[["FileName", "NumberOfFrames", "FPS"]].itertuples(index=False):
        path = str(root / "Videos" / f"{name}.avi")
        capture = cv2.VideoCapture(path)
        decoded = []
        while (frame := capture.read())[0]:
            decoded.append(frame[1])
        assert round(capture.get(cv2.CAP_PROP_FPS)) == fps
        capture.release()
        assert len(decoded) == frames and decoded[0].shape == (112, 112, 3)
        # Grey written as three equal channels: only JPEG chroma rounding separates them.
        assert np.abs(decoded[0].astype(int) - decoded[0][..., :1]).max() <= 3
        with av.open(path) as container:
            assert sum(1 for _ in container.decode(video=0)) == frames


def discs(rows: np.ndarray) -> float:
    """Method of discs by hand: pi/4 * sum(chord^2) * (axis / N) * (0.15 cm)^3, rows = axis then N chords."""
    axis = math.dist(rows[0, :2], rows[0, 2:])
    chords = [math.dist(r[:2], r[2:]) for r in rows[1:]]
    return math.pi / 4 * sum(c * c for c in chords) * axis / len(chords) * SPACING_ML


def test_ef_and_volumes_recomputed_from_tracings(root: Path) -> None:
    files, traces, extra = read(root, "FileList.csv"), read(root, "VolumeTracings.csv"), read(root, "FileListExtra.csv")
    for (name, ef, esv, edv), (ed, es) in zip(
        files[["FileName", "EF", "ESV", "EDV"]].itertuples(index=False),
        extra[["EDFrame", "ESFrame"]].itertuples(index=False),
        strict=True,
    ):
        rows = traces[traces["FileName"] == f"{name}.avi"]
        ed_v = discs(rows[rows["Frame"] == ed][["X1", "Y1", "X2", "Y2"]].to_numpy())
        es_v = discs(rows[rows["Frame"] == es][["X1", "Y1", "X2", "Y2"]].to_numpy())
        assert ed_v == pytest.approx(edv, abs=0.01) and es_v == pytest.approx(esv, abs=0.01)
        assert 100 * (ed_v - es_v) / ed_v == pytest.approx(ef, abs=0.01)


def test_reader_round_trip_and_lv_masks_inside_sector(root: Path) -> None:
    data = EchoNetDynamic(root)
    table = data.table.set_index("video_id")
    extra = read(root, "FileListExtra.csv").set_index("FileName")
    assert set(table["split"]) == {"train", "val", "test"}
    assert (table["patient_id"] == extra["PatientID"]).all()
    assert (table["mi"] == extra["MI"]).all()
    for video_id, row in table.iterrows():
        polygons = data.tracings(video_id)
        assert set(polygons) == {row["ed_frame"], row["es_frame"]}
        masks = {f: polygon_mask(p, 112, 112) for f, p in polygons.items()}
        # The reader's area rule (larger traced area = ED) agrees with the generator's ED/ES frames.
        assert masks[row["ed_frame"]].sum() > masks[row["es_frame"]].sum() > 50
        cap = cv2.VideoCapture(row["path"])
        sector = np.zeros((112, 112), bool)
        while (frame := cap.read())[0]:
            sector |= frame[1][..., 0] > 0
        for mask in masks.values():
            assert not (mask & ~sector).any()


def test_ground_truth_masks_match_the_traced_lv(root: Path) -> None:
    spec = physiology.sample_dataset(0, 1, FRAMES)[0]
    labels = physiology.lv_labels(spec)
    masks = lv_masks(spec)
    areas = physiology.lv_areas(spec)
    assert np.abs(masks.sum(axis=(1, 2)) - areas).max() < 0.03 * areas.max()
    traced = EchoNetDynamic(root).tracings(spec.name)
    for frame in (labels.ed_frame, labels.es_frame):
        traced_mask = polygon_mask(traced[frame], 112, 112)
        assert (traced_mask & masks[frame]).sum() / traced_mask.sum() > 0.95
    # Dark blood inside the cavity, brighter myocardium around it.
    video = render_video(spec)
    ed = labels.ed_frame
    ring = cv2.dilate(masks[ed].astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~cv2.dilate(
        masks[ed].astype(np.uint8), np.ones((3, 3), np.uint8)
    ).astype(bool)
    assert video[ed][ring].mean() > 2.5 * video[ed][masks[ed]].mean()


# -- physiology -----------------------------------------------------------------------------------------------


def test_disc_volume_of_a_cylinder() -> None:
    # 20 chords of 10 px along a 40 px axis: pi/4 * 20 * 100 * 40/20 px^3 = 1000*pi px^3.
    assert physiology.disc_volume(np.float64(40.0), np.full(20, 10.0)) == pytest.approx(1000 * math.pi * SPACING_ML)


def test_volume_curve_fast_ejection_slow_filling(population: list[physiology.VideoSpec]) -> None:
    for spec in population[:50]:
        cycle = spec.cycle
        ed, es = physiology.traced_frames(spec)
        volumes = physiology.lv_volumes(spec)
        assert volumes[ed] == pytest.approx(volumes.max()) and volumes[es] == pytest.approx(volumes.min())
        assert volumes[ed] - volumes[es] == pytest.approx(volumes[ed] * physiology.lv_labels(spec).ef / 100)
        t0 = cycle.ed_onset + cycle.ivc
        half = cycle.volume(np.array([t0 + cycle.ejection / 2]))[0]
        assert half < 0.4  # more than 60 % of the stroke leaves in the first half of ejection
        systole = cycle.ivc + cycle.ejection
        assert systole < cycle.rr - systole  # ejection is faster than refilling
        assert cycle.volume(np.array([cycle.ed_onset + cycle.rr]))[0] == pytest.approx(1.0)


def test_ef_population_mixes_normal_and_reduced_function(population: list[physiology.VideoSpec]) -> None:
    ef = np.array([physiology.lv_labels(s).ef for s in population])
    mi = np.array([s.patient.mi for s in population])
    assert 50 <= ef.mean() <= 57 and 11 <= ef.std() <= 15.5
    assert ef.min() < 25 and ef.max() > 74
    # A third with reduced EF (EchoNet-Dynamic: ~20 %), so that the binary tasks have both classes in numbers.
    assert 0.24 <= np.mean(ef <= 50) <= 0.4
    assert 0.18 <= np.mean((ef < 45) | (ef > 75)) <= 0.35
    assert 0.2 <= mi.mean() <= 0.36
    fps = np.array([s.fps for s in population])
    hr = np.array([s.heart_rate for s in population])
    assert fps.min() >= 30 and fps.max() <= 60 and hr.min() >= 48 and hr.max() <= 120


def test_patient_splits_are_40_15_45_per_block() -> None:
    splits = [physiology.sample_patient(0, p).split for p in range(40)]
    assert [splits.count(s) for s in physiology.SPLITS] == [16, 6, 18]
    assert set(splits[:3]) == set(physiology.SPLITS)


def test_one_frame_does_not_reveal_ef(population: list[physiology.VideoSpec]) -> None:
    rng = np.random.default_rng(0)
    ef, single, pair = [], [], []
    for spec in population:
        areas = physiology.lv_areas(spec, samples=24)
        ed, es = physiology.traced_frames(spec)
        ef.append(physiology.lv_labels(spec).ef)
        single.append([areas[rng.integers(spec.frames)]])
        pair.append([areas[ed], areas[es]])
    folds = KFold(5, shuffle=True, random_state=0)
    r2_single = cross_val_score(LinearRegression(), single, ef, cv=folds, scoring="r2").mean()
    r2_pair = cross_val_score(LinearRegression(), pair, ef, cv=folds, scoring="r2").mean()
    assert r2_single < 0.3 and r2_pair > 0.85


def test_mi_segment_moves_less(population: list[physiology.VideoSpec]) -> None:
    spec = next(s for s in population if s.patient.mi and s.patient.mi_severity > 0.8)
    centre = (0.21, 0.51, 0.80)[spec.patient.mi_level]
    ed, es = physiology.traced_frames(spec)
    state = physiology.lv_state(spec, np.array([centre]), np.array([ed, es]))
    septal = 1 - state.septal[1, 0] / state.septal[0, 0]
    lateral = 1 - state.lateral[1, 0] / state.lateral[0, 0]
    sick, healthy = (septal, lateral) if spec.patient.mi_side < 0 else (lateral, septal)
    assert sick == pytest.approx(healthy * (1 - spec.patient.mi_severity))


# -- bad input and atomicity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"videos": 0}, {"frames": 1}, {"seed": -1}, {"videos": 2.5}, {"workers": 0}])
def test_bad_sizes_raise_user_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(UserError):
        synthesize(tmp_path / "out", **{"videos": 2, "frames": 4, "progress": False, **kwargs})
    assert not (tmp_path / "out").exists()


def test_unusable_out_raises_user_error(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    for out in (file, file / "below"):
        with pytest.raises(UserError, match="file"):
            synthesize(out, videos=1, frames=4, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a SynthEcho folder"):
        synthesize(foreign, videos=1, frames=4, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_interrupted_generation_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "se"
    synthesize(out, videos=2, frames=8, progress=False)
    before = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    real, calls = writer.write_avi, []

    def crash_on_third(path: Path, frames: np.ndarray, fps: int) -> None:
        calls.append(path)
        if len(calls) % 3 == 0:
            raise KeyboardInterrupt
        real(path, frames, fps)

    monkeypatch.setattr(generate.writer, "write_avi", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        synthesize(out, videos=5, frames=8, seed=3, progress=False)
    # The previous complete dataset is untouched and no partial folder is left beside it.
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["se"]
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "fresh", videos=5, frames=8, progress=False)
    assert not (tmp_path / "fresh").exists()
