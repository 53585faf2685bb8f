"""How much EF SynthEcho carries, and how much of it a method's frozen features recover.

    python benchmarks/synthecho_signal.py [--size 64] [--methods videomae random_init] [--set KEY=VALUE ...]

Rows, each fitted on train, tuned on validation, scored once on test (ridge for ``ef`` R², logistic regression for
``ef_anomaly`` AUROC; 95 % intervals by bootstrap over test patients):

- ``oracle: tracing area ratio`` — 1 − (ES LV area / ED LV area) from the LV tracings at the working size: what the
  annotation geometry says about EF (an upper bound for any pixel method).
- ``oracle: LV-box dark-pixel range`` — pixels only: the fraction of dark pixels inside the LV's ED bounding box in
  every frame of the video, summarised as 1 − min/max and the SD over frames (motion of the cavity).
- ``single frame`` — the same 8×8 down-sampled intensities of one random frame per video: a static shortcut, if
  any.
- each method in ``--methods``: its kNN (``ef_anomaly``) and linear (``ef``) results through the harness with the
  run's settings (pass e.g. ``--set protocol.pool=mean_std``), plus the frame-shuffle control where supported.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from rich.table import Table
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from echobench.console import console
from echobench.data.decode_cache import DecodeCache
from echobench.data.synthecho import SynthEchoDataset
from echobench.data.tasks import get_task

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def patient_bootstrap(metric, y: np.ndarray, s: np.ndarray, patients: np.ndarray, n: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    ids = np.unique(patients)
    rows = {p: np.flatnonzero(patients == p) for p in ids}
    values = []
    for _ in range(n):
        take = np.concatenate([rows[p] for p in rng.choice(ids, size=len(ids), replace=True)])
        if len(np.unique(y[take])) < 2 and metric is roc_auc_score:
            continue
        values.append(metric(y[take], s[take]))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def fit_score(
    x: dict[str, np.ndarray], ef: dict[str, np.ndarray], anomaly: dict[str, np.ndarray], patients: np.ndarray
) -> tuple[str, str]:
    scaler = StandardScaler().fit(x["train"])
    z = {k: scaler.transform(v) for k, v in x.items()}
    ridge = max(
        ALPHAS, key=lambda a: r2_score(ef["val"], Ridge(alpha=a).fit(z["train"], ef["train"]).predict(z["val"]))
    )
    pred = Ridge(alpha=ridge).fit(z["train"], ef["train"]).predict(z["test"])
    r2 = r2_score(ef["test"], pred)
    r2_ci = patient_bootstrap(r2_score, ef["test"], pred, patients)

    def val_auc(c: float) -> float:
        model = LogisticRegression(C=c, max_iter=2000).fit(z["train"], anomaly["train"])
        return roc_auc_score(anomaly["val"], model.decision_function(z["val"]))

    c = max((1.0 / a for a in ALPHAS), key=val_auc)
    score = LogisticRegression(C=c, max_iter=2000).fit(z["train"], anomaly["train"]).decision_function(z["test"])
    auc = roc_auc_score(anomaly["test"], score)
    auc_ci = patient_bootstrap(roc_auc_score, anomaly["test"], score, patients)
    return f"{r2:.3f} [{r2_ci[0]:.3f}, {r2_ci[1]:.3f}]", f"{auc:.3f} [{auc_ci[0]:.3f}, {auc_ci[1]:.3f}]"


def oracle_features(dataset: SynthEchoDataset, cache: DecodeCache, ids: list[str], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    area, dark, single = [], [], []
    for video_id in ids:
        masks = {f: cache.working_mask(video_id, m) > 0 for f, m in dataset.masks(video_id).items()}
        row = dataset.table.set_index("video_id").loc[video_id]
        ed, es = masks[int(row["ed_frame"])], masks[int(row["es_frame"])]
        area.append([1.0 - es.sum() / max(1, ed.sum())])
        frames = cache.video(video_id)
        ys, xs = np.nonzero(ed)
        box = frames[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else frames
        fraction = (box < 40).mean(axis=(1, 2))
        dark.append([1.0 - fraction.min() / max(fraction.max(), 1e-6), fraction.std(), fraction.mean()])
        frame = frames[rng.integers(len(frames))]
        single.append(cv2.resize(frame, (8, 8), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0)
    return {"area": np.array(area), "dark": np.array(dark), "single": np.array(single)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--methods", nargs="*", default=[])
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()

    dataset = SynthEchoDataset.default()
    cache = DecodeCache.build(dataset, args.size)
    ef_task, anomaly_task = get_task("ef"), get_task("ef_anomaly")
    features: dict[str, dict[str, np.ndarray]] = {}
    ef, anomaly = {}, {}
    for split in ("train", "val", "test"):
        table = dataset.split_table(split)
        table = table[(table["ed_frame"] >= 0) & (table["es_frame"] >= 0)].reset_index(drop=True)
        ef[split] = ef_task.targets(table, dataset.name)[0]
        anomaly[split] = anomaly_task.targets(table, dataset.name)[0]
        for name, values in oracle_features(dataset, cache, list(table["video_id"]), seed=1).items():
            features.setdefault(name, {})[split] = values
        if split == "test":
            patients = table["patient_id"].to_numpy()
    table = Table(title=f"SynthEcho EF signal · {len(ef['test'])} test videos · test value [95% CI, patient bootstrap]")
    for column in ("readout", "ef R² (ridge)", "ef_anomaly AUROC (logistic)"):
        table.add_column(column)
    labels = {
        "area": "oracle: tracing area ratio",
        "dark": "oracle: LV-box dark-pixel range",
        "single": "single frame (8×8 pixels)",
    }
    for name, label in labels.items():
        table.add_row(label, *fit_score(features[name], ef, anomaly, patients))
    console.print(table)
    if args.methods:
        from echobench.runner import execute, resolve

        methods = Table(title="methods through the harness (test [95% CI])")
        for column in ("method", "knn ef_anomaly AUROC", "knn bal. acc.", "linear ef R²"):
            methods.add_column(column)
        for method in args.methods:
            knn = execute(resolve(method, "knn", sets=args.sets, profile=args.profile)).result
            linear = execute(resolve(method, "linear", sets=args.sets, profile=args.profile)).result

            def fmt(result, metric: str) -> str:
                low, high = result.ci.get(metric, (float("nan"), float("nan")))
                return f"{result.metrics[metric]:.3f} [{low:.3f}, {high:.3f}]"

            methods.add_row(method, fmt(knn, "auroc"), fmt(knn, "balanced_accuracy"), fmt(linear, "r2"))
        console.print(methods)


if __name__ == "__main__":
    main()
