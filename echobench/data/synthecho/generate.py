"""``synthesize``: generate a SynthEcho dataset folder (EchoNet-Dynamic format), atomically, with a progress bar.

Default size: 1,200 videos of 96 frames (~950 patients, most with one video; TEST: ~45 % of them, ~540 videos
from ~430 patients with ~150 ef_anomaly positives), so that test intervals over patients are narrow enough to
separate methods while generation stays within a minute on 2 CPU cores. 96 frames hold the quick profile's clip
(16 frames at stride 4) and more than one cardiac cycle at every simulated heart rate and frame rate. Videos are
rendered in worker processes (one per available core, at most 8); each video depends only on ``(seed, its
patient, its index within the patient)``, so the output is identical whatever the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path

import cv2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from echobench.atomic import atomic_dir
from echobench.data.synthecho import physiology, writer
from echobench.data.synthecho.anatomy import build_scene
from echobench.data.synthecho.render import render_video
from echobench.errors import UserError

SYNTHECHO_VERSION = "3"
DEFAULT_VIDEOS = 1200
DEFAULT_FRAMES = 96
_MAX_WORKERS = 8
_PARALLEL_FROM = 32  # below this many videos, starting worker processes costs more than it saves


def make_video(spec: physiology.VideoSpec, video_dir: Path) -> writer.VideoRecord:
    """Render one video into ``video_dir`` and return its labels."""
    frames = render_video(spec, build_scene(spec))
    writer.write_avi(video_dir / f"{spec.name}.avi", frames, spec.fps)
    labels = physiology.lv_labels(spec)
    return writer.VideoRecord(
        name=spec.name,
        ef=labels.ef,
        esv=labels.esv,
        edv=labels.edv,
        height=physiology.FRAME_SIZE,
        width=physiology.FRAME_SIZE,
        fps=spec.fps,
        frames=spec.frames,
        split=spec.patient.split,
        patient_id=f"SE{spec.patient.patient_id:05d}",
        mi=int(spec.patient.mi),
        heart_rate=spec.heart_rate,
        ed_frame=labels.ed_frame,
        es_frame=labels.es_frame,
        tracings=labels.tracings,
    )


def _worker_init() -> None:
    # One process per core already; OpenCV's own threads would only oversubscribe.
    cv2.setNumThreads(1)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _check_args(videos: int, seed: int, frames: int, workers: int | None) -> None:
    if isinstance(videos, bool) or not isinstance(videos, int) or videos < 1:
        raise UserError(f"--videos must be a whole number >= 1, got {videos!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise UserError(f"--frames must be a whole number >= 2, got {frames!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be a whole number >= 0, got {seed!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise UserError(f"workers must be a whole number >= 1, got {workers!r}")


def check_split_rule(videos: int, seed: int, frames: int) -> None:
    """A dataset for benchmarking needs a patient in every split; tiny folders for tests need not, so only
    ``echobench data synth`` calls this before generating anything."""
    _check_args(videos, seed, frames, None)
    present = {spec.patient.split for spec in physiology.sample_dataset(seed, videos, frames)}
    missing = [split for split in physiology.SPLITS if split not in present]
    if missing:
        raise UserError(
            f"--videos {videos} gives no {'/'.join(missing)} video (SynthEcho splits by patient, 1-3 videos each); "
            "use --videos 12 or more"
        )


def _check_out(out: Path) -> None:
    """Refuse destinations that cannot become a dataset folder, or whose replacement would destroy other data."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder; pass a new or empty folder path with --out")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{out} lies under {parent}, which is a file; pass a folder path with --out")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"cannot write under {parent} (permission denied); pass a writable --out folder")
            break
    if out.is_dir() and any(out.iterdir()) and writer.read_manifest(out) is None:
        raise UserError(
            f"{out} exists and is not a SynthEcho folder (no {writer.MANIFEST}); pass a new or empty folder with --out"
        )


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]SynthEcho[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _render_all(
    specs: list[physiology.VideoSpec], video_dir: Path, workers: int, progress: Progress
) -> list[writer.VideoRecord]:
    task = progress.add_task(f"rendering {len(specs)} videos", total=len(specs))
    if workers == 1:
        records = []
        for spec in specs:
            records.append(make_video(spec, video_dir))
            progress.advance(task)
        return records
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )
    try:
        futures: dict[Future[writer.VideoRecord], int] = {
            pool.submit(make_video, spec, video_dir): spec.index for spec in specs
        }
        done: dict[int, writer.VideoRecord] = {}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            progress.advance(task)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [done[spec.index] for spec in specs]


def synthesize(
    out: Path,
    *,
    videos: int = DEFAULT_VIDEOS,
    seed: int = 0,
    frames: int = DEFAULT_FRAMES,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Generate ``videos`` SynthEcho videos of ``frames`` frames into ``out`` and return ``out``.

    The folder appears only once complete (an interrupted run leaves nothing that reads as a dataset); an
    existing SynthEcho folder at ``out`` is replaced. ``workers`` defaults to the available cores (at most 8;
    one process for small datasets); worker processes are spawned, so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard. Clips too short to hold a whole systole (under ~0.5 s) trace their
    largest and smallest frames instead, which understates EF. Raises :class:`UserError` for bad sizes or an
    unusable ``out``.
    """
    _check_args(videos, seed, frames, workers)
    out = Path(out).expanduser()
    _check_out(out)
    if workers is None:
        workers = 1 if videos < _PARALLEL_FROM else min(_available_cpus(), _MAX_WORKERS, math.ceil(videos / 8))
    manifest = {
        "generator": "synthecho",
        "version": SYNTHECHO_VERSION,
        "seed": seed,
        "videos": videos,
        "frames": frames,
        "pixel_spacing_cm": physiology.PIXEL_SPACING_CM,
    }
    try:
        with atomic_dir(out) as tmp, _progress(progress) as bar:
            specs = physiology.sample_dataset(seed, videos, frames)
            video_dir = tmp / "Videos"
            video_dir.mkdir()
            records = _render_all(specs, video_dir, workers, bar)
            writer.write_tables(tmp, records)
            writer.write_manifest(tmp, manifest)
    except OSError as err:
        raise UserError(f"cannot write SynthEcho to {out} ({err}); pass a writable folder with --out") from err
    return out
