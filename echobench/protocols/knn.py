"""DINO weighted k-nearest-neighbour protocol on frozen features (FAISS).

Features are L2-normalised so that cosine similarity is an inner product (``IndexFlatIP``; a GPU index when
FAISS is built with GPU support and CUDA is available). ``feature_transform: center`` first subtracts the bank's
mean feature. FAISS proposes candidates in float32; they are re-ranked by exact float64 similarity, ties going to
the lower bank index, so neighbours (and every metric) are reproducible even when features nearly coincide.

A neighbour with similarity ``s`` votes with weight
``exp(s / T)``: for classification a class's score is the summed weight of its neighbours (``vote: plain``, DINO's
rule), or that sum divided by the class's prevalence among the bank's clips (``vote: balanced``, the default),
normalised over classes; the positive class's share is the AUROC score and the prediction is the class of the
largest share. A plain vote is a majority vote when neighbours' weights are nearly equal: with 12 % positives in
the bank it calls a clip positive only when more than half of its neighbours are positive, so a minority class is
almost never predicted; balanced votes weigh each class as if the bank were balanced. For regression the
prediction is the weighted mean of the neighbours' targets. One search at the largest ``k`` serves every ``k`` of
the grid, because FAISS returns neighbours sorted by similarity.

Every clip is scored alone; a video's output aggregates its clips: ``mean`` averages class scores (or
regression predictions) over clips, ``any`` (DISCOVER's paper rule, binary only) calls a video positive when
any clip is predicted positive and scores it by the largest clip score.

Variants: ``standard`` (the bank is the training split; ``k`` is chosen on validation by ``select_by``, ties going
to the smaller ``k`` and NaN counting as worst; test is queried once with that ``k``) and ``discover_code`` (the
DISCOVER code with ``vote: plain``: the bank is the validation split, ``k`` = 10, no selection, so no validation
metrics). ``select_by: auto`` is AUROC for binary classification tasks — threshold-free, so it still ranks the
``k`` when every ``k`` predicts the same classes and a threshold metric ties — and the task's primary metric
otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np
import torch

from echobench.data.tasks import Task
from echobench.errors import UserError
from echobench.metrics import classification_metrics, regression_metrics
from echobench.protocols.base import FeatureSet, ProtocolResult, check_split, config_from_mapping
from echobench.protocols.readout import Pool, check_pool
from echobench.protocols.scoring import first_best, interval_unit, intervals, predictions_frame

DISCOVER_CODE_K = 10
# faiss-gpu's brute-force search returns at most this many neighbours per query.
_GPU_MAX_K = 2048
_CPU_DATABASE_BLOCK = 8192

Aggregate = Literal["mean", "any"]
Variant = Literal["standard", "discover_code"]
FeatureTransform = Literal["raw", "center", "standardize"]
Vote = Literal["balanced", "plain"]
_AGGREGATES: tuple[str, ...] = ("mean", "any")
_VARIANTS: tuple[str, ...] = ("standard", "discover_code")
_VOTES: tuple[str, ...] = ("balanced", "plain")
#: Metrics where a smaller value is better; every other metric of echobench.metrics is higher-is-better.
_LOWER_IS_BETTER = frozenset({"mae", "rmse"})


def _metric_names(classification: bool) -> tuple[str, ...]:
    """Names of the metrics :mod:`echobench.metrics` reports for a classification or regression task."""
    if classification:
        return tuple(classification_metrics(np.array([0, 1]), np.array([0, 1]), np.array([0.0, 1.0])))
    return tuple(regression_metrics(np.array([0.0, 1.0]), np.array([0.0, 1.0])))


@dataclass
class KnnConfig:
    """Protocol settings; field names match ``protocols/knn.yaml``.

    ``k`` fixes the neighbour count (no selection); otherwise k is chosen from ``ks`` on validation by the metric
    ``select_by`` (``auto``: AUROC for binary classification, the task's primary metric otherwise). ``vote``:
    ``balanced`` divides each class's summed neighbour weight by its prevalence in the bank, ``plain`` does not.
    """

    ks: tuple[int, ...] = (10, 20, 50, 100, 200)
    k: int | None = None
    temperature: float = 0.07
    aggregate: Aggregate = "mean"
    variant: Variant = "standard"
    feature_transform: FeatureTransform = "raw"
    vote: Vote = "balanced"
    select_by: str = "auto"
    ci_resamples: int = 1000
    seed: int = 0
    pool: Pool = "mean_std"

    def __post_init__(self) -> None:
        if self.k is not None:
            self.ks = (self.k,)
        ks = (self.ks,) if isinstance(self.ks, int) else tuple(self.ks)
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
            raise UserError(f"knn: ks must be a non-empty list of positive integers, got {self.ks!r}")
        self.ks = ks
        if not self.temperature > 0:
            raise UserError(f"knn: temperature must be > 0, got {self.temperature!r}")
        _check_choice("aggregate", self.aggregate, _AGGREGATES)
        _check_choice("variant", self.variant, _VARIANTS)
        _check_choice("feature_transform", self.feature_transform, ("raw", "center", "standardize"))
        _check_choice("vote", self.vote, _VOTES)
        _check_choice("select_by", self.select_by, ("auto", *_metric_names(True), *_metric_names(False)))
        check_pool("knn", self.pool)
        if self.ci_resamples < 0:
            raise UserError(f"knn: ci_resamples must be >= 0 (0 = no intervals), got {self.ci_resamples}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> KnnConfig:
        """Build from a mapping (the ``config`` block of the YAML spec); unknown keys are a :class:`UserError`."""
        return config_from_mapping(cls, values, "knn")


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"knn: {name} must be one of {', '.join(allowed)}, got {value!r}")


def cosine_topk(bank: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities ``(n_queries, k)`` (float64) and bank indices of each query's ``k`` nearest bank rows.

    Rows are sorted by decreasing similarity, ties by increasing bank index. FAISS (float32) only proposes
    candidates; they are re-ranked by their exact float64 similarity, so the ranking does not depend on float32
    rounding or on FAISS's summation order. A query's candidates are sufficient when its k-th exact similarity
    exceeds the last candidate's float32 similarity by more than the float32 error bound (no row left out can
    rank above it); other queries are searched again with twice as many candidates, up to the whole bank.
    ``k`` must not exceed the bank size.
    """
    bank64, queries64 = _unit_rows(bank), _unit_rows(queries)
    n_bank, dim = bank64.shape
    bound = 4 * dim * float(np.finfo(np.float32).eps)
    sims = np.empty((len(queries64), k))
    idx = np.empty((len(queries64), k), dtype=np.int64)
    pending = np.arange(len(queries64))
    width = min(n_bank, max(2 * k, k + 32))
    bank32 = np.ascontiguousarray(bank64, dtype=np.float32)
    while pending.size:
        if width >= n_bank or width > _GPU_MAX_K:
            sims[pending], idx[pending] = _exact_topk(queries64[pending], bank64, None, k)
            break
        index = _flat_ip_index(dim, width)
        index.add(bank32)
        with _blas_database_block(_CPU_DATABASE_BLOCK):
            approx, candidates = index.search(np.ascontiguousarray(queries64[pending], dtype=np.float32), width)
        top_sims, top_idx = _exact_topk(queries64[pending], bank64, candidates, k)
        done = top_sims[:, -1] > approx[:, -1].astype(np.float64) + bound
        sims[pending[done]], idx[pending[done]] = top_sims[done], top_idx[done]
        pending = pending[~done]
        width = min(n_bank, 2 * width)
    return sims, idx


def _exact_topk(
    queries: np.ndarray, bank: np.ndarray, candidates: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's candidate rows (all rows when ``None``) by float64 similarity, ties by bank
    index; queries go in blocks so that no intermediate exceeds ~256 MiB."""
    width = len(bank) if candidates is None else candidates.shape[1]
    block = max(1, (1 << 25) // (width * (1 if candidates is None else bank.shape[1])))
    sims, idx = np.empty((len(queries), k)), np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        rows = slice(start, start + block)
        if candidates is None:
            exact = queries[rows] @ bank.T
            rows_idx = np.broadcast_to(np.arange(len(bank)), exact.shape)
        else:
            rows_idx = candidates[rows]
            exact = np.einsum("qd,qkd->qk", queries[rows], bank[rows_idx])
        order = np.lexsort((rows_idx, -exact), axis=-1)[:, :k]
        sims[rows] = np.take_along_axis(exact, order, axis=1)
        idx[rows] = np.take_along_axis(rows_idx, order, axis=1)
    return sims, idx


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64 (a zero row stays zero)."""
    out = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def transformed(bank: np.ndarray, queries: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """``raw``: features as encoded; ``center``: both minus the bank's mean (then L2-normalised by the search), a
    common fix for features dominated by one shared direction (e.g. MAE encoders); ``standardize``: centred and
    divided by the bank's per-dimension standard deviation (constant dimensions are left unscaled), so that
    readouts mixing scales (a token mean beside a motion map) weigh every dimension alike."""
    if transform == "raw":
        return bank, queries
    bank64, queries64 = np.asarray(bank, dtype=np.float64), np.asarray(queries, dtype=np.float64)
    mean = bank64.mean(axis=0)
    if transform == "center":
        return bank64 - mean, queries64 - mean
    spread = bank64.std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    return (bank64 - mean) / scale, (queries64 - mean) / scale


@contextlib.contextmanager
def _blas_database_block(rows: int) -> Iterator[None]:
    """Let FAISS's CPU search multiply queries against ``rows`` bank rows per BLAS call, then restore.

    FAISS's default (1,024) makes many small GEMMs each followed by a heap pass; at a 100k x 384 bank and
    k = 200, 8,192 rows cut CPU time by about a third (benchmarks/knn_faiss_vs_sklearn.py). The block of
    distances is at most 4,096 queries x ``rows`` float32 (128 MiB).
    """
    previous = faiss.cvar.distance_compute_blas_database_bs
    faiss.cvar.distance_compute_blas_database_bs = rows
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_database_bs = previous


def _flat_ip_index(dim: int, k: int) -> faiss.Index:
    if k <= _GPU_MAX_K and faiss_gpu_available():
        return faiss.GpuIndexFlatIP(_gpu_resources(), dim)
    return faiss.IndexFlatIP(dim)


def faiss_gpu_available() -> bool:
    """Whether FAISS was built with GPU support and a CUDA device is usable."""
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0 and torch.cuda.is_available()


@functools.cache
def _gpu_resources() -> Any:
    # One resource object per process: creating it allocates scratch GPU memory.
    return faiss.StandardGpuResources()


@dataclass
class _VideoOutputs:
    """Per-video outputs for every ``k`` of a grid: columns follow the grid."""

    prediction: np.ndarray
    score: np.ndarray | None


def run_knn(train: FeatureSet, val: FeatureSet, test: FeatureSet, task: Task, config: KnnConfig) -> ProtocolResult:
    """Weighted kNN evaluation of frozen features; see the module docstring for the two variants."""
    _check_inputs(train, val, test, task, config)
    if config.variant == "standard":
        bank = train
        ks = sorted({min(k, len(bank.features)) for k in config.ks})
        val_out = _predict(bank, val, ks, task, config)
        per_k = [_metrics(val.targets, val_out, i) for i in range(len(ks))]
        metric = selection_metric(task, config)
        best = _select(per_k, metric, task)
        k = ks[best]
        val_metrics = per_k[best]
        chosen: dict[str, float | int | str] = {"k": k, "bank": "train", "select_by": metric}
        for kk, m in zip(ks, per_k, strict=True):
            chosen[f"val_{metric}@k={kk}"] = m[metric]
    else:
        bank = val
        k = min(DISCOVER_CODE_K, len(bank.features))
        val_metrics = {}
        chosen = {"k": k, "bank": "val"}
    if task.is_classification:
        chosen["vote"] = config.vote
    # Test is queried once, after k is fixed on validation.
    test_out = _predict(bank, test, [k], task, config)
    metrics = _metrics(test.targets, test_out, 0)
    score = None if test_out.score is None else test_out.score[:, 0]
    ci = intervals(test.targets, test_out.prediction[:, 0], score, config.ci_resamples, config.seed, test.groups)
    return ProtocolResult(
        metrics=metrics,
        ci=ci,
        chosen=chosen,
        val_metrics=val_metrics,
        predictions=predictions_frame(test, test_out.prediction[:, 0], score),
        **interval_unit(ci, test.groups, test.num_videos),
    )


def _predict(bank: FeatureSet, queries: FeatureSet, ks: list[int], task: Task, config: KnnConfig) -> _VideoOutputs:
    """Per-video predictions of ``queries`` for every ``k`` in ``ks`` (ascending) from one search."""
    sims, idx = cosine_topk(*transformed(bank.features, queries.features, config.feature_transform), max(ks))
    neighbour_targets = bank.targets[bank.clip_video][idx]
    # Shifting by the row maximum rescales a query's weights uniformly (shares and weighted means are
    # unchanged) and keeps exp finite for small temperatures.
    weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / config.temperature)
    columns = np.asarray(ks) - 1
    if not task.is_classification:
        cum_w = np.cumsum(weights, axis=1)[:, columns]
        cum_wy = np.cumsum(weights * neighbour_targets, axis=1)[:, columns]
        return _VideoOutputs(_video_mean(cum_wy / cum_w, queries), None)
    votes = weights[:, :, None] * (neighbour_targets[:, :, None] == np.arange(len(task.classes)))
    class_scores = np.cumsum(votes, axis=1)[:, columns]
    if config.vote == "balanced":
        class_scores = class_scores / _bank_prevalence(bank, len(task.classes))
    shares = class_scores / class_scores.sum(axis=2, keepdims=True)
    if config.aggregate == "mean":
        video_shares = _video_mean(shares, queries)
        return _VideoOutputs(video_shares.argmax(axis=2), video_shares[:, :, 1])
    clip_positive = (shares.argmax(axis=2) == 1).astype(np.int64)
    return _VideoOutputs(_video_max(clip_positive, queries), _video_max(shares[:, :, 1], queries))


def _video_mean(clip_values: np.ndarray, fs: FeatureSet) -> np.ndarray:
    sums = np.zeros((fs.num_videos, *clip_values.shape[1:]))
    np.add.at(sums, fs.clip_video, clip_values)
    counts = np.bincount(fs.clip_video, minlength=fs.num_videos)
    return sums / counts.reshape(-1, *([1] * (clip_values.ndim - 1)))


def _video_max(clip_values: np.ndarray, fs: FeatureSet) -> np.ndarray:
    out = np.full((fs.num_videos, *clip_values.shape[1:]), -np.inf)
    np.maximum.at(out, fs.clip_video, clip_values)
    return out.astype(clip_values.dtype)


def _metrics(targets: np.ndarray, out: _VideoOutputs, column: int) -> dict[str, float]:
    if out.score is None:
        return regression_metrics(targets, out.prediction[:, column])
    return classification_metrics(targets, out.prediction[:, column], out.score[:, column])


def _bank_prevalence(bank: FeatureSet, num_classes: int) -> np.ndarray:
    """Each class's share of the bank's clips; a class absent from the bank gets 1 (its summed weight is 0 anyway,
    and dividing by 1 keeps its share 0 instead of 0/0)."""
    counts = np.bincount(np.asarray(bank.targets)[bank.clip_video], minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, counts / counts.sum(), 1.0)


def selection_metric(task: Task, config: KnnConfig) -> str:
    """The validation metric that chooses ``k``: ``select_by``, with ``auto`` resolved for ``task``."""
    if config.select_by != "auto":
        return config.select_by
    if task.is_classification and len(task.classes) == 2:
        return "auroc"
    return task.primary_metric


def _select(per_k: list[dict[str, float]], metric: str, task: Task) -> int:
    """Index of the best ``k`` by ``metric``; the first (smallest ``k``) among ties; NaN is worst."""
    values = np.array([m[metric] for m in per_k])
    higher_is_better = task.higher_is_better if metric == task.primary_metric else metric not in _LOWER_IS_BETTER
    return first_best(values, higher_is_better)


def _check_inputs(train: FeatureSet, val: FeatureSet, test: FeatureSet, task: Task, config: KnnConfig) -> None:
    splits = {"train": train, "val": val, "test": test}
    dims = {name: fs.features.shape[1] for name, fs in splits.items()}
    if len(set(dims.values())) != 1:
        raise UserError(f"knn: feature dimensions differ between splits {dims}; re-encode all splits")
    for name, fs in splits.items():
        check_split("knn", name, fs, task)
    if config.aggregate == "any" and (not task.is_classification or len(task.classes) != 2):
        raise UserError(f"knn: aggregate 'any' needs a binary classification task, {task.name} is not one")
    allowed = _metric_names(task.is_classification)
    if config.select_by not in ("auto", *allowed):
        raise UserError(
            f"knn: select_by {config.select_by!r} is not a metric of {task.kind} task {task.name}; "
            f"use auto or one of {', '.join(allowed)}"
        )
