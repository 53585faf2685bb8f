"""SynthEcho sanity: generation time, label populations, splits, and whether one frame gives EF away.

    python benchmarks/synthecho_sanity.py                 # default size (400 x 128 frames) in a temp folder
    python benchmarks/synthecho_sanity.py --root DIR      # a folder written by ``echobench data synth``

Prints the generation time, EF statistics, class balance (EF <= 50; anomaly = EF < 45 or > 75), MI fraction,
videos and patients per split, how well the FileList EF is recomputed from the written tracings, and the
cross-validated R² of a linear regression predicting EF from one random frame's LV area versus from the ED and ES
areas (LV areas are the generator's ground truth). A single frame must be a far weaker predictor.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_score

from echobench.data.synthecho import physiology
from echobench.data.synthecho.generate import DEFAULT_FRAMES, DEFAULT_VIDEOS, synthesize
from echobench.data.synthecho.writer import read_manifest


def generate(folder: Path, videos: int, frames: int, seed: int) -> Path:
    start = time.perf_counter()
    before = _cpu_seconds()
    root = synthesize(folder / "synthecho", videos=videos, seed=seed, frames=frames, progress=True)
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - before
    print(
        f"generation: {videos} videos x {frames} frames in {wall:.1f} s wall on {os.cpu_count()} CPUs "
        f"(CPU {cpu:.1f} s over all processes = {cpu / videos * 1000:.0f} ms/video; "
        f"machine load average {os.getloadavg()[0]:.1f})"
    )
    return root


def _cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cv_r2(features: np.ndarray, target: np.ndarray) -> float:
    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    return float(np.mean(cross_val_score(LinearRegression(), features, target, cv=folds, scoring="r2")))


def disc_ef(tracings: pd.DataFrame) -> pd.Series:
    """EF recomputed from VolumeTracings.csv by the method of discs (row 0 of a frame = long axis)."""
    volumes = {}
    for (name, _frame), rows in tracings.groupby(["FileName", "Frame"], sort=False):
        xy = rows[["X1", "Y1", "X2", "Y2"]].to_numpy()
        axis = np.hypot(xy[0, 2] - xy[0, 0], xy[0, 3] - xy[0, 1])
        chords = np.hypot(xy[1:, 2] - xy[1:, 0], xy[1:, 3] - xy[1:, 1])
        volumes.setdefault(name.removesuffix(".avi"), []).append(float(physiology.disc_volume(axis, chords)))
    return pd.Series({name: 100 * (max(v) - min(v)) / max(v) for name, v in volumes.items()})


def report(root: Path) -> None:
    manifest = read_manifest(root)
    if manifest is None:
        raise SystemExit(f"{root} holds no SynthEcho manifest; pass a folder written by `echobench data synth`")
    files = pd.read_csv(root / "FileList.csv")
    extra = pd.read_csv(root / "FileListExtra.csv")
    tracings = pd.read_csv(root / "VolumeTracings.csv")
    ef = files["EF"].to_numpy()
    print(f"videos: {len(files)}  patients: {extra['PatientID'].nunique()}  seed: {manifest['seed']}")
    print(f"EF: mean {ef.mean():.1f}  sd {ef.std(ddof=1):.1f}  min {ef.min():.1f}  max {ef.max():.1f}")
    print(f"EDV: mean {files['EDV'].mean():.1f} ml  ESV: mean {files['ESV'].mean():.1f} ml")
    anomaly = np.mean((ef < 45) | (ef > 75))
    print(f"EF <= 50 (reduced): {np.mean(ef <= 50):.1%}   anomaly (EF < 45 or > 75): {anomaly:.1%}")
    print(f"MI (regional wall-motion abnormality): {extra['MI'].mean():.1%}")
    merged = files.merge(extra, on="FileName")
    for split in ("TRAIN", "VAL", "TEST"):
        part = merged[merged["Split"] == split]
        print(
            f"  {split:5s}: {len(part):4d} videos ({len(part) / len(merged):.0%}), "
            f"{part['PatientID'].nunique():4d} patients, EF mean {part['EF'].mean():.1f}"
        )
    leaked = merged.groupby("PatientID")["Split"].nunique().gt(1).sum()
    print(f"patients in more than one split: {leaked}")
    recomputed = disc_ef(tracings).reindex(files["FileName"]).to_numpy()
    print(f"|EF(FileList) - EF(method of discs on tracings)|: max {np.max(np.abs(recomputed - ef)):.4f}")

    specs = physiology.sample_dataset(int(manifest["seed"]), int(manifest["videos"]), int(manifest["frames"]))
    if [s.name for s in specs] != files["FileName"].tolist():
        raise SystemExit(f"{root} does not match the generator of this checkout (version {manifest['version']})")
    rng = np.random.default_rng(0)
    single, ed_es = [], []
    for spec in specs:
        areas = physiology.lv_areas(spec)
        ed, es = physiology.traced_frames(spec)
        single.append(areas[rng.integers(spec.frames)])
        ed_es.append((areas[ed], areas[es]))
    print("cross-validated R² (5-fold linear regression) of EF from LV area(s):")
    print(f"  one random frame : {cv_r2(np.array(single)[:, None], ef):.3f}")
    print(f"  ED and ES frames : {cv_r2(np.array(ed_es), ef):.3f}")
    ratio = np.array(ed_es)[:, 1:] / np.array(ed_es)[:, :1]
    print(f"  ES/ED area ratio : {cv_r2(ratio, ef):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="existing SynthEcho folder (default: generate one)")
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.root is not None:
        report(args.root)
        return
    with tempfile.TemporaryDirectory() as tmp:
        report(generate(Path(tmp), args.videos, args.frames, args.seed))


if __name__ == "__main__":
    main()
