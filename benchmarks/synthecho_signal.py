"""How much EF SynthEcho carries, and how much of it each method's frozen features recover (issue 16's instrument).

    ECHOBENCH_HOME=... python benchmarks/synthecho_signal.py [--methods random_init videomae discover]
        [--pretrain-seeds 0 1 2] [--readouts] [--set KEY=VALUE ...]

Everything is fitted on train, tuned on validation and scored once on test, with 95 % intervals by bootstrap over
test **patients**. Tables:

1. Oracles (ridge for ``ef`` R², logistic regression for ``ef_anomaly`` AUROC, penalties chosen on validation):
   - ``tracing area ratio`` — 1 − ES/ED LV area from the tracings: what the annotation geometry says about EF;
   - ``pixels: LV-box darkness over the video`` — pixels only, the ED tracing's bounding box locating the LV: for
     every frame the fraction of dark pixels in that box (raw and blurred, several thresholds) and the box's mean
     intensity, each summarised over the video's frames as range/max and SD; if this stays below R² 0.8,
     SynthEcho's EF is not visible in its pixels;
   - ``frame speed`` — the same darkness series, summarised by its change between consecutive frames: a feature
     that needs frame order;
   - ``single frame`` — 8×8 intensities of one random frame: the static shortcut, if any.
   Each row is also scored on the test videos with their frames shuffled (fitted on intact videos, as
   ``protocol.shuffle_frames`` does in the harness): order-free features keep their R², order-reading ones lose it.
   This checks the control itself.
2. ``--readouts``: validation evidence for the frozen protocols' default ``protocol.pool`` — every method's linear
   ``ef`` validation R² and kNN ``ef_anomaly`` validation AUROC for each readout (``encoder``, ``mean``, ``motion``,
   ``mean_std``) — and for the kNN's ``feature_transform``, so defaults are chosen on validation across methods,
   never on test.
3. Methods through the harness with the run's settings (default readout unless ``--set protocol.pool=...``): kNN
   ``ef_anomaly`` AUROC and balanced accuracy, linear ``ef`` R², and the same linear probe scored on test clips with
   shuffled frames (``protocol.shuffle_frames=true``: what the features took from frame order is lost) and on frozen
   test clips (``protocol.freeze_frames=true``: a method that reads motion loses its R²). ``--pretrain-seeds``
   pretrains each method once per seed (``pretrain.seed``). When ``random_init`` is among the methods, every other
   method's kNN AUROC and linear R² are also given as differences from random init of the same seed, with paired
   bootstrap intervals over the same patient resamples (``echobench compare``). With several pretraining seeds,
   one more row per method gives the mean over its seeds, each interval that of the mean (every seed scored on the
   same patient resamples), and the differences of the means (``echobench compare --repeat-a/--repeat-b``).
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from echobench.compare import compare_results, load_result
from echobench.console import console
from echobench.data.decode_cache import DecodeCache
from echobench.data.synthecho import SynthEchoDataset
from echobench.data.tasks import get_task
from echobench.leaderboard import per_video
from echobench.protocols.scoring import intervals_of_mean
from echobench.stats import unit_counts

BASELINE = "random_init"
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))
DARK_THRESHOLDS = (30, 40, 60, 80)


def patient_interval(
    metric: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, s: np.ndarray, patients: np.ndarray
) -> tuple[float, float]:
    ids = np.unique(patients)
    counts = unit_counts(np.random.default_rng(0).integers(0, len(ids), size=(1000, len(ids))), patients, len(y))
    values = []
    for row in counts.astype(np.int64):
        take = np.repeat(np.arange(len(y)), row)
        if metric is roc_auc_score and len(np.unique(y[take])) < 2:
            continue
        values.append(metric(y[take], s[take]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def fmt(value: float, interval: tuple[float, float]) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def fit_score(
    x: dict[str, np.ndarray], ef: dict[str, np.ndarray], anomaly: dict[str, np.ndarray], patients: np.ndarray
) -> tuple[str, str, str]:
    """Ridge ``ef`` R² and logistic ``ef_anomaly`` AUROC on test, then the same ridge on ``x["shuffled"]`` (the test
    videos' features with their frames permuted: fitted and selected on intact videos, as the harness's control)."""
    scaler = StandardScaler().fit(x["train"])
    z = {k: scaler.transform(v) for k, v in x.items()}

    def ridge(alpha: float) -> Ridge:
        return Ridge(alpha=alpha).fit(z["train"], ef["train"])

    alpha = max(ALPHAS, key=lambda a: r2_score(ef["val"], ridge(a).predict(z["val"])))
    pred = ridge(alpha).predict(z["test"])
    shuffled = ridge(alpha).predict(z["shuffled"])

    def logistic(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=5000).fit(z["train"], anomaly["train"])

    c = max(
        (1.0 / a for a in ALPHAS), key=lambda c: roc_auc_score(anomaly["val"], logistic(c).decision_function(z["val"]))
    )
    score = logistic(c).decision_function(z["test"])
    return (
        fmt(r2_score(ef["test"], pred), patient_interval(r2_score, ef["test"], pred, patients)),
        fmt(roc_auc_score(anomaly["test"], score), patient_interval(roc_auc_score, anomaly["test"], score, patients)),
        fmt(r2_score(ef["test"], shuffled), patient_interval(r2_score, ef["test"], shuffled, patients)),
    )


def _range_and_sd(per_frame: np.ndarray) -> list[float]:
    return [1.0 - per_frame.min() / max(per_frame.max(), 1e-6), float(per_frame.std())]


def _frame_speed(per_frame: np.ndarray) -> list[float]:
    """How fast a per-frame series changes between consecutive frames: needs the frames in order."""
    steps = np.abs(np.diff(per_frame))
    return [float(steps.mean()), float(np.percentile(steps, 90))]


def _darkness(frames: np.ndarray, ed_mask: np.ndarray) -> tuple[list[float], list[float]]:
    """Over-the-video summaries of the LV box's darkness: order-free ones (range, SD) and frame speeds."""
    ys, xs = np.nonzero(ed_mask)
    box = frames[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    blurred = np.stack([cv2.GaussianBlur(frame, (0, 0), 1.5) for frame in box])
    order_free: list[float] = []
    speed: list[float] = []
    for threshold in DARK_THRESHOLDS:
        for source in (box, blurred):
            dark = (source < threshold).mean(axis=(1, 2))
            order_free += _range_and_sd(dark)
            speed += _frame_speed(dark)
    order_free += _range_and_sd(box.mean(axis=(1, 2)))
    speed += _frame_speed(box.mean(axis=(1, 2)))
    return order_free, speed


def oracle_features(
    dataset: SynthEchoDataset, cache: DecodeCache, ids: list[str], seed: int, *, shuffle: bool = False
) -> dict[str, np.ndarray]:
    """Oracle and single-frame features of ``ids``; ``shuffle`` permutes each video's frames first (a fixed order
    per video id), as ``protocol.shuffle_frames`` does to the harness's test clips."""
    rng = np.random.default_rng(seed)
    rows = dataset.table.set_index("video_id")
    area, pixels, speeds, single = [], [], [], []
    for video_id in ids:
        masks = {f: cache.working_mask(video_id, m) > 0 for f, m in dataset.masks(video_id).items()}
        ed, es = masks[int(rows.loc[video_id, "ed_frame"])], masks[int(rows.loc[video_id, "es_frame"])]
        area.append([1.0 - es.sum() / max(1, ed.sum())])
        frames = cache.video(video_id).astype(np.float32)
        if shuffle:
            frames = frames[np.random.default_rng(zlib.crc32(video_id.encode())).permutation(len(frames))]
        order_free, speed = _darkness(frames, ed)
        pixels.append(order_free)
        speeds.append(speed)
        frame = frames[rng.integers(len(frames))]
        single.append(cv2.resize(frame, (8, 8), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0)
    return {"area": np.array(area), "pixels": np.array(pixels), "speed": np.array(speeds), "single": np.array(single)}


def oracle_table(size: int) -> None:
    dataset = SynthEchoDataset.default()
    cache = DecodeCache.build(dataset, size)
    ef_task, anomaly_task = get_task("ef"), get_task("ef_anomaly")
    features: dict[str, dict[str, np.ndarray]] = {}
    ef, anomaly = {}, {}
    patients = np.array([])
    for split in ("train", "val", "test"):
        table = dataset.split_table(split)
        table = table[(table["ed_frame"] >= 0) & (table["es_frame"] >= 0)].reset_index(drop=True)
        ef[split] = ef_task.targets(table, dataset.name)[0]
        anomaly[split] = anomaly_task.targets(table, dataset.name)[0]
        for name, values in oracle_features(dataset, cache, list(table["video_id"]), seed=1).items():
            features.setdefault(name, {})[split] = values
        if split == "test":
            patients = table["patient_id"].to_numpy()
            shuffled = oracle_features(dataset, cache, list(table["video_id"]), seed=1, shuffle=True)
            for name, values in shuffled.items():
                features[name]["shuffled"] = values
    title = (
        f"SynthEcho EF signal · {len(ef['test'])} test videos, {len(np.unique(patients))} patients, "
        f"{int(anomaly['test'].sum())} ef_anomaly positives · test [95% CI over patients]"
    )
    table = Table(title=title)
    for column in ("readout", "ef R² (ridge)", "ef_anomaly AUROC (logistic)", "ef R², test frames shuffled"):
        table.add_column(column)
    labels = {
        "area": "oracle: tracing area ratio",
        "pixels": "oracle: pixels, LV-box darkness range/SD over the video (order-free)",
        "speed": "pixels: LV-box darkness change between consecutive frames (reads order)",
        "single": "single random frame (8×8 pixels)",
    }
    for name, label in labels.items():
        table.add_row(label, *fit_score(features[name], ef, anomaly, patients))
    console.print(table)


def _outcome(method: str, protocol: str, sets: list[str], profile: str):  # noqa: ANN202 - a runner.Outcome
    from echobench.runner import execute, resolve

    return execute(resolve(method, protocol, sets=sets, profile=profile))


def _result(method: str, protocol: str, sets: list[str], profile: str):  # noqa: ANN202 - a ProtocolResult
    return _outcome(method, protocol, sets, profile).result


def _difference(path: Path | list[Path], baseline: Path | list[Path], metric: str) -> str:
    """metric(method) − metric(baseline) on the same test videos (of the means over repeats when given lists),
    95 % paired bootstrap interval over patients."""
    paired = compare_results(path, baseline, metric)
    return f"{paired['difference']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}]"


def _cell(result, metric: str) -> str:  # noqa: ANN001 - a ProtocolResult
    return fmt(result.metrics[metric], result.ci.get(metric, (float("nan"), float("nan"))))


def readout_table(methods: list[str], sets: list[str], profile: str) -> None:
    table = Table(title="validation evidence for protocol.pool (linear ef val R² · kNN ef_anomaly val AUROC)")
    table.add_column("method")
    pools = ("encoder", "mean", "motion", "mean_std")
    for pool in pools:
        table.add_column(pool)
    for method in methods:
        cells = []
        for pool in pools:
            chosen = [*sets, f"protocol.pool={pool}", "protocol.ci_resamples=0"]
            linear = _result(method, "linear", chosen, profile)
            knn = _result(method, "knn", chosen, profile)
            cells.append(f"{linear.val_metrics['r2']:.3f} · {knn.val_metrics['auroc']:.3f}")
        table.add_row(method, *cells)
    console.print(table)
    transforms = ("raw", "center", "standardize")
    table = Table(title="validation evidence for the kNN feature_transform (ef_anomaly val AUROC, default readout)")
    table.add_column("method")
    for transform in transforms:
        table.add_column(transform)
    for method in methods:
        cells = []
        for transform in transforms:
            chosen = [*sets, f"protocol.feature_transform={transform}", "protocol.ci_resamples=0"]
            cells.append(f"{_result(method, 'knn', chosen, profile).val_metrics['auroc']:.3f}")
        table.add_row(method, *cells)
    console.print(table)


def methods_table(methods: list[str], seeds: list[int], sets: list[str], profile: str) -> None:
    """Each method × pretraining seed; beside it, its difference from random init of the same seed with a paired
    interval (both on the same patient resamples, as ``echobench compare``), which separate intervals understate.
    With several seeds, a row per method gives the mean over its seeds: each interval is that of the mean (every
    seed scored on the same patient resamples) and the differences are of the means (``echobench compare`` with
    ``--repeat-a``/``--repeat-b``)."""
    table = Table(title="methods through the harness · test [95% CI over patients]")
    columns = ("method", "pretrain seed", "knn ef_anomaly AUROC", "knn bal. acc.", "linear ef R²", "shuffled R²")
    for column in (*columns, "frozen-frame R²", f"Δ AUROC vs {BASELINE}", f"Δ R² vs {BASELINE}"):
        table.add_column(column)
    cells = (("knn", "auroc"), ("knn", "balanced_accuracy"), ("linear", "r2"), ("shuffled", "r2"), ("frozen", "r2"))
    paths: dict[str, dict[str, list[Path]]] = {}
    for method in sorted(methods, key=lambda name: name != BASELINE):
        runs = paths.setdefault(method, {"knn": [], "linear": [], "shuffled": [], "frozen": []})
        for index, seed in enumerate(seeds):
            run = [*sets, f"pretrain.seed={seed}"]
            outcomes = {
                "knn": _outcome(method, "knn", run, profile),
                "linear": _outcome(method, "linear", run, profile),
                "shuffled": _outcome(method, "linear", [*run, "protocol.shuffle_frames=true"], profile),
                "frozen": _outcome(method, "linear", [*run, "protocol.freeze_frames=true"], profile),
            }
            for name, outcome in outcomes.items():
                runs[name].append(outcome.result_path)
            differences = ["—", "—"]
            if method != BASELINE and BASELINE in paths:
                baseline = paths[BASELINE]
                differences = [
                    _difference(runs["knn"][index], baseline["knn"][index], "auroc"),
                    _difference(runs["linear"][index], baseline["linear"][index], "r2"),
                ]
            row = [_cell(outcomes[name].result, metric) for name, metric in cells]
            table.add_row(method, str(seed), *row, *differences)
    if len(seeds) > 1:
        table.add_section()
        for method, runs in paths.items():
            differences = ["—", "—"]
            if method != BASELINE and BASELINE in paths:
                baseline = paths[BASELINE]
                differences = [
                    _difference(runs["knn"], baseline["knn"], "auroc"),
                    _difference(runs["linear"], baseline["linear"], "r2"),
                ]
            row = [_mean_cell(runs[name], metric) for name, metric in cells]
            table.add_row(method, f"mean of {len(seeds)}", *row, *differences)
    console.print(table)


def _mean_cell(paths: list[Path], metric: str) -> str:
    """The mean of ``metric`` over repeats with the bootstrap interval of that mean, drawn as the repeats' own
    intervals were (their protocol's resamples and seed)."""
    results = [load_result(path) for path in paths]
    protocol = results[0].record.get("protocol_config", {})
    frames = [per_video(result.predictions()) for result in results]
    interval = intervals_of_mean(frames, protocol.get("ci_resamples", 1000), protocol.get("seed", 0)) or {}
    mean = float(np.mean([result.record["metrics"][metric] for result in results]))
    return fmt(mean, interval.get(metric, (float("nan"), float("nan"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="working size of the oracle features")
    parser.add_argument("--methods", nargs="*", default=[])
    parser.add_argument("--pretrain-seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--readouts", action="store_true", help="the validation evidence for protocol.pool")
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()
    if not args.no_oracle:
        oracle_table(args.size)
    if args.readouts:
        readout_table(args.methods, args.sets, args.profile)
    if args.methods:
        methods_table(args.methods, args.pretrain_seeds, args.sets, args.profile)


if __name__ == "__main__":
    main()
