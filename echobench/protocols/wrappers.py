"""Protocols that wrap another protocol: label-fraction sweeps and patient-grouped k-fold cross-validation.

Both re-define the splits the inner protocol sees (:meth:`ProtocolContext.with_splits`) and run it unchanged, so
any protocol can be swept or cross-validated. Frozen inner protocols read features out of the embedding cache
of the dataset splits, so a whole sweep or k-fold costs about one encode pass.

* ``label-sweep``: the inner protocol is trained on nested, stratified, patient-grouped subsets of the
  labelled training videos (:func:`echobench.data.subsets.label_fraction_subsets`), ``fractions`` × ``subset_seeds``;
  validation and test stay whole. Reported per fraction: mean and SD over seeds of every test metric
  (``<metric>@<fraction>``, ``<metric>_sd@<fraction>``); ``ci`` holds each run's bootstrap interval
  (``<metric>@<fraction>@seed=<s>``); ``runs`` records each (fraction, seed)'s ``n_train`` and the hash of the
  video ids it trained on. At fraction 1.0 every seed trains on the same videos (the whole labelled training
  split, the same hash), so the SD there measures only the inner protocol's own seed (head initialisation and
  minibatch order), not the choice of training videos.
* ``kfold``: train+val videos are split into ``folds`` patient-grouped folds (stratified by class or target
  quantile); in round ``i`` fold ``i`` is the test set, fold ``i + 1`` (cyclically) the validation set and the rest
  the training set. Reported: mean and SD over folds of every test metric (``<metric>``, ``<metric>_sd``), and
  the metric of the pooled out-of-fold predictions (``<metric>_pooled``, every video predicted once) with its
  bootstrap interval over patients. The dataset's own test split is not used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from echobench import registry
from echobench.context import ProtocolContext
from echobench.data.base import VideoDataset
from echobench.data.subsets import kfold_patient_splits, label_fraction_subsets
from echobench.data.tasks import Task
from echobench.errors import UserError
from echobench.metrics import bootstrap_ci, classification_metrics, regression_metrics
from echobench.protocols.base import ProtocolResult, config_from_mapping
from echobench.protocols.repeat import mean_sd
from echobench.protocols.scoring import interval_unit
from echobench.results import videos_hash

WRAPPER_FAMILIES = ("label_sweep", "kfold")


@dataclass
class InnerProtocol:
    """The wrapped protocol: a spec name (or YAML path) and overrides of its ``config`` block."""

    inner: str = "linear"
    inner_config: dict[str, Any] = field(default_factory=dict)

    def resolve(self) -> tuple[Any, Any]:
        """The inner family and its config object (validated)."""
        from echobench.protocols import get_family

        spec = registry.load_protocol(self.inner)
        if spec.family in WRAPPER_FAMILIES:
            raise UserError(f"protocol {self.inner!r} is itself a wrapper; wrap a protocol that trains or scores")
        if not isinstance(self.inner_config, dict):
            raise UserError(f"inner_config must be a mapping of {self.inner} settings, got {self.inner_config!r}")
        family = get_family(spec.family)
        try:
            return family, family.config_from_dict({**spec.settings.get("config", {}), **self.inner_config})
        except UserError as exc:
            # Inner settings arrive as protocol.inner_config={...}; say so, or "protocol.lrs" would mislead.
            raise UserError(f"inner_config of {self.inner}: {exc}") from None


@dataclass
class SweepConfig(InnerProtocol):
    fractions: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0)
    subset_seeds: tuple[int, ...] = (0, 1, 2)
    stratify: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.fractions = tuple(self.fractions) if isinstance(self.fractions, list | tuple) else (self.fractions,)
        for fraction in self.fractions:
            if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
                raise UserError(
                    f"label-sweep: fraction {fraction!r} is outside (0, 1]; e.g. --set protocol.fractions=[0.1,0.5,1]"
                )
        self.fractions = tuple(sorted(float(f) for f in set(self.fractions)))
        self.subset_seeds = (
            tuple(self.subset_seeds) if isinstance(self.subset_seeds, list | tuple) else (self.subset_seeds,)
        )
        if not self.subset_seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.subset_seeds):
            raise UserError(
                f"label-sweep: subset_seeds must be a non-empty list of integers, got {self.subset_seeds!r}"
            )
        self.resolve()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SweepConfig:
        return config_from_mapping(cls, values, "label-sweep")


@dataclass
class KfoldConfig(InnerProtocol):
    folds: int = 5
    stratify: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 3:
            raise UserError(
                f"kfold: folds must be an integer >= 3 (one test, one validation and at least one training fold), "
                f"got {self.folds!r}"
            )
        self.resolve()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> KfoldConfig:
        return config_from_mapping(cls, values, "kfold")


def run_sweep_family(ctx: ProtocolContext) -> ProtocolResult:
    cfg: SweepConfig = ctx.config
    family, inner_config = cfg.resolve()
    train, targets = ctx.labelled("train", record=False)
    subsets = label_fraction_subsets(list(train["patient_id"]), targets, cfg.fractions, cfg.subset_seeds, cfg.stratify)
    runs: list[dict[str, Any]] = []
    ci: dict[str, tuple[float, float]] = {}
    chosen: dict[str, Any] = {}
    predictions = []
    for fraction in cfg.fractions:
        for seed in cfg.subset_seeds:
            rows = subsets[(fraction, seed)]
            inner = ctx.with_splits(train=train.iloc[rows]).with_config(
                dataclasses.replace(inner_config, seed=seed), seed=seed
            )
            result = family.run(inner)
            tag = f"@{fraction:g}@seed={seed}"
            trained_on = train["video_id"].iloc[rows]
            runs.append(
                {
                    "fraction": fraction,
                    "seed": seed,
                    "n_train": len(rows),
                    "train_videos_hash": videos_hash(trained_on),
                    "result": result,
                }
            )
            ci |= {f"{name}@{fraction:g}@seed={seed}": bounds for name, bounds in result.ci.items()}
            chosen |= {f"{name}{tag}": value for name, value in result.chosen.items()}
            predictions.append(result.predictions.assign(fraction=fraction, seed=seed))
    metrics, val_metrics, per_seed, summary = _per_fraction(runs)
    # Every run is tested on the same whole test split, so all share the first run's resampling unit.
    first = runs[0]["result"]
    return ProtocolResult(
        metrics=metrics,
        ci=ci,
        chosen=chosen | {"inner": cfg.inner},
        val_metrics=val_metrics,
        predictions=pd.concat(predictions, ignore_index=True),
        per_seed=per_seed,
        summary=summary,
        runs=[{k: v for k, v in run.items() if k != "result"} | {"metrics": run["result"].metrics} for run in runs],
        ci_unit=first.ci_unit,
        ci_units=first.ci_units,
    )


def _per_fraction(
    runs: list[dict[str, Any]],
) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]], pd.DataFrame]:
    metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = {}
    per_seed: dict[str, list[float]] = {}
    rows = []
    for fraction in sorted({r["fraction"] for r in runs}):
        group = [r for r in runs if r["fraction"] == fraction]
        sizes = sorted({r["n_train"] for r in group})
        # Subsets of one fraction can differ in size (whole patients are drawn); show the range, never a mean.
        n_train = sizes[0] if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        row: dict[str, Any] = {"fraction": fraction, "n_train": n_train}
        for name in group[0]["result"].metrics:
            values = [r["result"].metrics[name] for r in group]
            mean, sd = mean_sd(values)
            metrics[f"{name}@{fraction:g}"], metrics[f"{name}_sd@{fraction:g}"] = mean, sd
            per_seed[f"{name}@{fraction:g}"] = values
            row[name], row[f"{name}_sd"] = mean, sd
        for name in group[0]["result"].val_metrics:
            val_metrics[f"{name}@{fraction:g}"] = mean_sd([r["result"].val_metrics[name] for r in group])[0]
        rows.append(row)
    return metrics, val_metrics, per_seed, pd.DataFrame(rows)


def check_kfold(config: KfoldConfig, dataset: VideoDataset, task: Task) -> None:
    """Before any training: enough patients with labels in train+val for the folds."""
    table = dataset.table[dataset.table["split"].isin(("train", "val"))]
    _, valid = task.targets(table, dataset.name)
    patients = table["patient_id"][valid].nunique()
    if config.folds > patients:
        raise UserError(
            f"kfold: {config.folds} folds but only {patients} labelled patients in train+val of {dataset.name}; "
            f"use --set protocol.folds=K with 3 <= K <= {patients}"
        )


def run_kfold_family(ctx: ProtocolContext) -> ProtocolResult:
    cfg: KfoldConfig = ctx.config
    family, inner_config = cfg.resolve()
    train, train_targets = ctx.labelled("train", record=False)
    val, val_targets = ctx.labelled("val", record=False)
    pool = pd.concat([train, val], ignore_index=True)
    targets = np.concatenate([train_targets, val_targets])
    held_out = [
        rows for _, rows in kfold_patient_splits(list(pool["patient_id"]), targets, cfg.folds, cfg.seed, cfg.stratify)
    ]
    runs = []
    chosen: dict[str, Any] = {}
    predictions = []
    for fold in range(cfg.folds):
        val_fold = (fold + 1) % cfg.folds
        training = np.setdiff1d(np.arange(len(pool)), np.concatenate([held_out[fold], held_out[val_fold]]))
        inner = ctx.with_splits(
            train=pool.iloc[training], val=pool.iloc[held_out[val_fold]], test=pool.iloc[held_out[fold]]
        ).with_config(dataclasses.replace(inner_config, seed=cfg.seed), seed=cfg.seed)
        result = family.run(inner)
        runs.append(result)
        chosen |= {f"{name}@fold={fold}": value for name, value in result.chosen.items()}
        predictions.append(result.predictions.assign(fold=fold))
    metrics, val_metrics, per_fold, rows = {}, {}, {}, []
    for name in runs[0].metrics:
        values = [r.metrics[name] for r in runs]
        metrics[name], metrics[f"{name}_sd"] = mean_sd(values)
        per_fold[name] = values
    for name in runs[0].val_metrics:
        val_metrics[name] = mean_sd([r.val_metrics[name] for r in runs])[0]
    for fold, result in enumerate(runs):
        rows.append({"fold": fold, "n_test": len(held_out[fold]), **result.metrics})
    pooled = pd.concat(predictions, ignore_index=True)
    patients = pool.set_index("video_id")["patient_id"].loc[pooled["video_id"]].astype(str).tolist()
    pooled_metrics, ci = _pooled(pooled, ctx.task, getattr(inner_config, "ci_resamples", 1000), cfg.seed, patients)
    summary = pd.DataFrame(rows)
    summary = pd.concat(
        [summary, pd.DataFrame([{"fold": "mean", "n_test": len(pool), **{n: metrics[n] for n in per_fold}}])],
        ignore_index=True,
    )
    for name in per_fold:
        summary[f"{name}_sd"] = [np.nan] * cfg.folds + [metrics[f"{name}_sd"]]
    return ProtocolResult(
        metrics=metrics | pooled_metrics,
        ci=ci,
        chosen=chosen | {"inner": cfg.inner, "folds": cfg.folds},
        val_metrics=val_metrics,
        predictions=pooled,
        per_seed={f"{name}@folds": values for name, values in per_fold.items()},
        summary=summary,
        **interval_unit(ci, patients, len(pooled)),
    )


def _pooled(
    predictions: pd.DataFrame, task: Task, resamples: int, seed: int, groups: list[str]
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Metrics of the out-of-fold predictions of every video, and their bootstrap intervals over patients
    (``groups``: each prediction's patient id)."""
    if task.kind not in ("classification", "regression") or "prediction" not in predictions:
        return {}, {}
    y, pred = predictions["target"].to_numpy(), predictions["prediction"].to_numpy()
    if task.is_classification:
        fn, arrays = (
            classification_metrics,
            (y.astype(np.int64), pred.astype(np.int64), predictions["score"].to_numpy()),
        )
    else:
        fn, arrays = regression_metrics, (y.astype(np.float64), pred.astype(np.float64))
    values = {f"{name}_pooled": value for name, value in fn(*arrays).items()}
    if resamples == 0:
        return values, {}
    intervals = bootstrap_ci(fn, arrays, n_resamples=resamples, seed=seed, groups=groups)
    return values, {f"{name}_pooled": bounds for name, bounds in intervals.items()}
