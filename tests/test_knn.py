"""Weighted kNN protocol: hand-computed votes, k grid and selection, aggregation, variants, config."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import faiss
import numpy as np
import pytest
import yaml

from echobench.data.tasks import get_task
from echobench.errors import UserError
from echobench.metrics import bootstrap_ci, classification_metrics
from echobench.protocols.base import FeatureSet
from echobench.protocols.knn import KnnConfig, cosine_topk, run_knn, transformed

T = 0.07
SPEC = Path(__file__).resolve().parents[1] / "protocols" / "knn.yaml"


def _at(degrees: list[float], radius: float = 1.0) -> np.ndarray:
    """2-D points at the given angles; cosine similarity between them is cos(angle difference)."""
    rad = np.deg2rad(degrees)
    return (radius * np.stack([np.cos(rad), np.sin(rad)], axis=1)).astype(np.float32)


def _videos(features: np.ndarray, targets: list, clip_video: list[int] | None = None) -> FeatureSet:
    """A split whose clips belong to ``clip_video`` (default: one clip per video)."""
    clip_video = list(range(len(features))) if clip_video is None else clip_video
    n_videos = max(clip_video) + 1
    return FeatureSet(
        features=features,
        clip_video=np.asarray(clip_video),
        video_ids=[f"v{i}" for i in range(n_videos)],
        targets=np.asarray(targets),
    )


# A bank at 0, 30, 60, 90 and 180 degrees, with non-unit norms so that normalisation matters.
BANK_ANGLES = [0.0, 30.0, 60.0, 90.0, 180.0]
BANK = _at(BANK_ANGLES, radius=3.0)
BANK_CLASSES = [1, 0, 1, 0, 0]
BANK_VALUES = [10.0, 20.0, 30.0, 40.0, 50.0]


def _cfg(**kw: object) -> KnnConfig:
    return KnnConfig(**{"ci_resamples": 0, **kw})


def test_weighted_vote_matches_hand_computation() -> None:
    query = _at([10.0], radius=0.5)
    split = _videos(query, [1])
    task = get_task("ef_anomaly")
    plain = run_knn(_videos(BANK, BANK_CLASSES), split, split, task, _cfg(ks=(3,), vote="plain"))
    balanced = run_knn(_videos(BANK, BANK_CLASSES), split, split, task, _cfg(ks=(3,)))
    # Top-3 by cosine: 0 deg (class 1, sim cos 10), 30 deg (class 0, cos 20), 60 deg (class 1, cos 50).
    w = {angle: math.exp(math.cos(math.radians(abs(10 - angle))) / T) for angle in (0, 30, 60)}
    positive = (w[0] + w[60]) / (w[0] + w[30] + w[60])
    assert plain.predictions["score"].iloc[0] == pytest.approx(positive, abs=1e-6)
    assert plain.predictions["prediction"].iloc[0] == int(positive > 0.5)
    # Balanced: the bank holds 2 positives and 3 negatives of 5 clips.
    positive_share, negative_share = (w[0] + w[60]) / 0.4, w[30] / 0.6
    assert balanced.predictions["score"].iloc[0] == pytest.approx(
        positive_share / (positive_share + negative_share), abs=1e-6
    )
    assert (plain.chosen["k"], plain.chosen["vote"], balanced.chosen["vote"]) == (3, "plain", "balanced")


def _minority_bank() -> FeatureSet:
    """10 bank clips, 10 % positives: one positive at 0 deg and nine negatives at 10 deg."""
    return _videos(_at([0.0] + [10.0] * 9), [1] + [0] * 9)


def test_balanced_vote_reports_the_minority_class_where_a_plain_vote_cannot() -> None:
    queries = _videos(_at([0.0, 10.0]), [1, 0])
    task = get_task("ef_anomaly")
    plain = run_knn(_minority_bank(), queries, queries, task, _cfg(ks=(10,), vote="plain")).predictions
    balanced = run_knn(_minority_bank(), queries, queries, task, _cfg(ks=(10,), vote="balanced")).predictions
    # Query at 0 deg: the positive at similarity 1, nine negatives at cos 10 deg = 0.98481.
    near, far = math.exp(1.0 / T), math.exp(math.cos(math.radians(10.0)) / T)  # far / near = 0.8049
    plain_score = near / (near + 9 * far)  # 0.1213: one neighbour in ten is positive -> the majority wins
    balanced_score = (near / 0.1) / (near / 0.1 + 9 * far / 0.9)  # 0.5540: each class weighed as if balanced
    assert plain["score"].iloc[0] == pytest.approx(plain_score, abs=1e-6)
    assert balanced["score"].iloc[0] == pytest.approx(balanced_score, abs=1e-6)
    assert plain_score < 0.5 < balanced_score
    # Query at 10 deg (a negative): the nine negatives at similarity 1 still win the balanced vote.
    negative_score = (far / 0.1) / (far / 0.1 + 9 * near / 0.9)  # 0.4460
    assert balanced["score"].iloc[1] == pytest.approx(negative_score, abs=1e-6)
    assert plain["prediction"].tolist() == [0, 0]
    assert balanced["prediction"].tolist() == [1, 0]


def test_bank_prevalence_counts_clips() -> None:
    """The bank's positive video has two clips, each of its four negative videos one: a third of the clips."""
    bank = _videos(_at([0.0, 0.0, 10.0, 10.0, 10.0, 10.0]), [1, 0, 0, 0, 0], clip_video=[0, 0, 1, 2, 3, 4])
    query = _videos(_at([5.0]), [1])
    task = get_task("ef_anomaly")
    balanced = run_knn(bank, query, query, task, _cfg(ks=(6,))).predictions["score"].iloc[0]
    plain = run_knn(bank, query, query, task, _cfg(ks=(6,), vote="plain")).predictions["score"].iloc[0]
    # Every clip is 5 deg from the query, so all weights are equal: plain 2/6; balanced (2 / (2/6)) over
    # (2 / (2/6) + 4 / (4/6)) = 1/2 (per-video prevalence, 1/5 positive, would give 2/3).
    assert plain == pytest.approx(1 / 3, abs=1e-6)
    assert balanced == pytest.approx(1 / 2, abs=1e-6)


def test_k_is_capped_by_bank_size_and_deduplicated() -> None:
    query = _at([10.0])
    split = _videos(query, [1])
    res = run_knn(_videos(BANK, BANK_CLASSES), split, split, get_task("ef_anomaly"), _cfg(ks=(3, 10, 20)))
    per_k = sorted(key for key in res.chosen if key.startswith("val_"))
    assert per_k == ["val_auroc@k=3", "val_auroc@k=5"]
    # With k = 5 every bank row votes (180 deg with weight exp(cos 170 / T)).
    cos = [math.cos(math.radians(abs(10 - a))) for a in BANK_ANGLES]
    w = [math.exp(c / T) for c in cos]
    positive = sum(wi for wi, c in zip(w, BANK_CLASSES, strict=True) if c == 1) / sum(w)
    res5 = run_knn(_videos(BANK, BANK_CLASSES), split, split, get_task("ef_anomaly"), _cfg(ks=(50,), vote="plain"))
    assert res5.chosen["k"] == 5
    assert res5.predictions["score"].iloc[0] == pytest.approx(positive, abs=1e-6)


def _two_cluster_problem() -> tuple[FeatureSet, FeatureSet]:
    """3 positives near 0 deg and 30 negatives near 25 deg: k = 3 is right for queries at 0 deg, k = 30 wrong."""
    bank = _at([0.0, 0.5, -0.5] + list(np.linspace(24.0, 26.0, 30)))
    train = _videos(bank, [1, 1, 1] + [0] * 30)
    val = _videos(_at([0.2, -0.2, 25.0, 24.5]), [1, 1, 0, 0])
    return train, val


def test_k_selection_picks_the_validation_best_k() -> None:
    train, val = _two_cluster_problem()
    config = _cfg(ks=(30, 3, 10), vote="plain", select_by="balanced_accuracy")
    res = run_knn(train, val, val, get_task("ef_anomaly"), config)
    assert res.chosen["val_balanced_accuracy@k=3"] == 1.0
    assert res.chosen["val_balanced_accuracy@k=30"] == 0.5
    assert res.chosen["k"] == 3
    assert res.val_metrics["balanced_accuracy"] == 1.0


def test_ties_go_to_the_smaller_k() -> None:
    train = _videos(_at([0.0, 1.0, 2.0, 90.0, 91.0, 92.0]), [1, 1, 1, 0, 0, 0])
    val = _videos(_at([1.0, 91.0]), [1, 0])
    res = run_knn(train, val, val, get_task("ef_anomaly"), _cfg(ks=(6, 2, 4)))
    assert res.chosen["k"] == 2
    assert res.chosen["val_auroc@k=6"] == 1.0


def test_auto_selection_ranks_k_by_auroc_where_balanced_accuracy_ties() -> None:
    """Every k predicts every validation video negative (balanced accuracy 0.5 at each k), but from k = 5 on
    the positive videos' neighbourhoods hold the bank's positive and score above the negatives."""
    bank = _videos(_at([0.0, 1.0, -1.0, 2.5, 40.0, 41.0, 42.0, 43.0, 44.0, 45.0, 46.0]), [0, 0, 0, 1] + [0] * 7)
    val = _videos(_at([0.0, 0.2, 43.0, 44.0]), [1, 1, 0, 0])
    task = get_task("ef_anomaly")
    auto = run_knn(bank, val, val, task, _cfg(ks=(1, 5), vote="plain"))
    by_accuracy = run_knn(bank, val, val, task, _cfg(ks=(1, 5), vote="plain", select_by="balanced_accuracy"))
    # k = 1: every query's nearest clip is a negative, all scores 0, AUROC 0.5. k = 5: the positives' fourth
    # neighbour is the positive at 2.5 deg (score ~0.2, still predicted negative); the negatives score 0.
    assert auto.predictions["prediction"].tolist() == [0, 0, 0, 0]
    assert (auto.chosen["val_auroc@k=1"], auto.chosen["val_auroc@k=5"]) == (0.5, 1.0)
    assert (auto.chosen["select_by"], auto.chosen["k"]) == ("auroc", 5)
    assert by_accuracy.chosen["val_balanced_accuracy@k=1"] == by_accuracy.chosen["val_balanced_accuracy@k=5"] == 0.5
    assert (by_accuracy.chosen["select_by"], by_accuracy.chosen["k"]) == ("balanced_accuracy", 1)


def test_auto_selection_is_the_primary_metric_beyond_binary_tasks() -> None:
    bank = _videos(BANK, BANK_VALUES)
    val = _videos(_at([40.0, 170.0]), [25.0, 50.0])
    res = run_knn(bank, val, val, get_task("ef"), _cfg(ks=(1, 3)))
    assert res.chosen["select_by"] == "mae" and {"val_mae@k=1", "val_mae@k=3"} <= set(res.chosen)
    # MAE is lower-is-better: the chosen k has the smallest validation MAE.
    assert res.chosen["k"] == min((1, 3), key=lambda k: res.chosen[f"val_mae@k={k}"])
    assert "vote" not in res.chosen


def _random_splits(seed: int) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    rng = np.random.default_rng(seed)

    def split(n: int) -> FeatureSet:
        y = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 8)) + 0.8 * y[:, None]
        return _videos(x.astype(np.float32), y.tolist())

    return split(120), split(40), split(40)


@pytest.mark.parametrize("vote", ["balanced", "plain"])
@pytest.mark.parametrize("select_by", ["auto", "balanced_accuracy"])
def test_selection_never_reads_test_targets(vote: str, select_by: str) -> None:
    train, val, test = _random_splits(seed=0)
    task, cfg = get_task("ef_anomaly"), _cfg(ks=(1, 5, 10, 40), vote=vote, select_by=select_by)
    honest = run_knn(train, val, test, task, cfg)
    poisoned = dataclasses.replace(test, targets=1 - test.targets)
    cheat = run_knn(train, val, poisoned, task, cfg)
    assert cheat.chosen == honest.chosen
    assert cheat.val_metrics == honest.val_metrics
    assert cheat.metrics["accuracy"] == pytest.approx(1.0 - honest.metrics["accuracy"])


def test_any_versus_mean_aggregation() -> None:
    bank = _videos(_at([0.0, 1.0, 90.0, 91.0]), [1, 1, 0, 0])
    # Video 0: one clip near the positives, two near the negatives; video 1: all clips near the negatives.
    test = _videos(_at([0.5, 90.5, 89.5, 90.0, 91.0]), [1, 0], clip_video=[0, 0, 0, 1, 1])
    clips = _videos(test.features, [1, 0, 0, 0, 0])
    task = get_task("ef_anomaly")
    clip_score = run_knn(bank, clips, clips, task, _cfg(ks=(4,))).predictions["score"].to_numpy()
    mean = run_knn(bank, clips, test, task, _cfg(ks=(4,), aggregate="mean")).predictions
    any_ = run_knn(bank, clips, test, task, _cfg(ks=(4,), aggregate="any")).predictions
    np.testing.assert_allclose(mean["score"], [clip_score[:3].mean(), clip_score[3:].mean()], atol=1e-12)
    np.testing.assert_allclose(any_["score"], [clip_score[:3].max(), clip_score[3:].max()], atol=1e-12)
    assert mean["prediction"].tolist() == [0, 0]
    assert any_["prediction"].tolist() == [1, 0]


def test_regression_averages_clip_predictions() -> None:
    bank = _videos(BANK, BANK_VALUES)
    test = _videos(_at([10.0, 40.0, 170.0]), [0.0, 0.0], clip_video=[0, 0, 1])
    clips = _videos(test.features, [0.0, 0.0, 0.0])
    clip_pred = run_knn(bank, clips, clips, get_task("ef"), _cfg(ks=(2,))).predictions["prediction"].to_numpy()
    video_pred = run_knn(bank, clips, test, get_task("ef"), _cfg(ks=(2,))).predictions["prediction"].to_numpy()
    np.testing.assert_allclose(video_pred, [clip_pred[:2].mean(), clip_pred[2]], atol=1e-12)


def test_discover_code_variant_uses_the_validation_bank_and_k_10() -> None:
    angles = list(np.linspace(0.0, 10.0, 12)) + list(np.linspace(80.0, 90.0, 12))
    labels = [1] * 12 + [0] * 12
    train = _videos(_at(angles), [1 - y for y in labels])  # a bank that would predict every video wrongly
    val = _videos(_at(angles), labels)
    test = _videos(_at([5.0, 85.0]), [1, 0])
    task = get_task("ef_anomaly")
    code = run_knn(train, val, test, task, _cfg(variant="discover_code", vote="plain"))
    assert code.chosen == {"k": 10, "bank": "val", "vote": "plain"}
    assert code.val_metrics == {}
    assert code.predictions["prediction"].tolist() == [1, 0]
    standard = run_knn(train, val, test, task, _cfg(ks=(10,)))
    assert standard.chosen["bank"] == "train"
    assert standard.predictions["prediction"].tolist() == [0, 1]
    small_val = _videos(_at([0.0, 90.0]), [1, 0])
    assert run_knn(train, small_val, test, task, _cfg(variant="discover_code")).chosen["k"] == 2


def test_result_fields_and_intervals() -> None:
    train, val, test = _random_splits(seed=1)
    res = run_knn(train, val, test, get_task("ef_anomaly"), KnnConfig(ks=(5, 10), ci_resamples=200, seed=3))
    p = res.predictions
    assert list(p.columns) == ["video_id", "target", "prediction", "score"]
    assert p["video_id"].tolist() == test.video_ids
    expected = classification_metrics(p["target"].to_numpy(), p["prediction"].to_numpy(), p["score"].to_numpy())
    assert res.metrics == pytest.approx(expected)
    arrays = (p["target"].to_numpy(), p["prediction"].to_numpy(), p["score"].to_numpy())
    assert res.ci == bootstrap_ci(classification_metrics, arrays, n_resamples=200, seed=3)


def test_cosine_topk_equals_brute_force() -> None:
    rng = np.random.default_rng(2)
    bank, queries = rng.normal(size=(300, 16)), rng.normal(size=(20, 16))
    sims, idx = cosine_topk(bank, queries, 7)
    cos = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        bank / np.linalg.norm(bank, axis=1, keepdims=True)
    ).T
    expected = np.argsort(-cos, axis=1)[:, :7]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(cos, expected, axis=1), atol=1e-5)


def test_config_errors_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown setting 'temprature' \\(did you mean 'temperature'\\?\\)"):
        KnnConfig.from_dict({"temprature": 0.1})
    with pytest.raises(UserError, match="aggregate must be one of mean, any"):
        KnnConfig(aggregate="max")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="variant must be one of"):
        KnnConfig(variant="discover")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="positive integers"):
        KnnConfig(ks=(10, 0))
    with pytest.raises(UserError, match="temperature"):
        KnnConfig(temperature=0.0)
    with pytest.raises(UserError, match="^knn: vote must be one of balanced, plain, got 'majority'$"):
        KnnConfig(vote="majority")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="^protocol.vote must be one of 'balanced', 'plain', got 'majority'$"):
        KnnConfig.from_dict({"vote": "majority"})
    with pytest.raises(UserError, match="^knn: select_by must be one of auto, accuracy, .*, got 'auc'$"):
        KnnConfig.from_dict({"select_by": "auc"})
    train, val, test = _random_splits(seed=0)
    regression = _videos(train.features, np.ones(train.num_videos).tolist())
    with pytest.raises(UserError, match="aggregate 'any' needs a binary classification task"):
        run_knn(regression, regression, regression, get_task("ef"), _cfg(aggregate="any"))
    with pytest.raises(UserError, match="select_by 'mae' is not a metric of classification task ef_anomaly"):
        run_knn(train, val, test, get_task("ef_anomaly"), _cfg(select_by="mae"))
    with pytest.raises(UserError, match="feature dimensions differ"):
        run_knn(train, val, _videos(np.zeros((2, 3), np.float32), [0, 1]), get_task("ef_anomaly"), _cfg())


def test_yaml_spec_matches_config_defaults() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    assert (spec["name"], spec["family"], spec["task"]) == ("knn", "knn", "ef_anomaly")
    assert spec["eval_clips"] == {"start": "evenly", "num_clips": 1}
    assert KnnConfig.from_dict(spec["config"]) == KnnConfig()
    get_task(spec["task"])


def test_fixed_k_overrides_the_grid():
    assert KnnConfig(k=20).ks == (20,)
    assert KnnConfig.from_dict({"k": 7, "ks": [10, 20]}).ks == (7,)


def _near_tied(n: int, dim: int, seed: int) -> np.ndarray:
    """Rows within cosine ~0.996-0.99999 of each other: one shared direction plus tiny noise (MAE-like)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=dim)
    return (shared + rng.normal(scale=2e-3, size=(n, dim)) * rng.uniform(0.05, 1.0, size=(n, 1))).astype(np.float32)


def _exact_ranking(bank: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Independent float64 ranking: decreasing cosine, ties by increasing bank index."""
    b = np.asarray(bank, np.float64) / np.linalg.norm(np.asarray(bank, np.float64), axis=1, keepdims=True)
    q = np.asarray(queries, np.float64) / np.linalg.norm(np.asarray(queries, np.float64), axis=1, keepdims=True)
    cos = q @ b.T
    return np.stack([np.lexsort((np.arange(len(b)), -row))[:k] for row in cos])


def test_near_tied_features_give_the_float64_top_k() -> None:
    bank, queries = _near_tied(400, 64, seed=0), _near_tied(60, 64, seed=0)[::-1].copy() + np.float32(1e-4)
    k = 20
    expected = _exact_ranking(bank, queries, k)
    # The data really are near-tied: a plain float32 FAISS search disagrees with the exact ranking somewhere.
    b32, q32 = bank / np.linalg.norm(bank, axis=1, keepdims=True), queries / np.linalg.norm(queries, axis=1)[:, None]
    index = faiss.IndexFlatIP(64)
    index.add(np.ascontiguousarray(b32, dtype=np.float32))
    assert (index.search(np.ascontiguousarray(q32, dtype=np.float32), k)[1] != expected).any()

    _, idx32 = cosine_topk(bank, queries, k)
    _, idx64 = cosine_topk(bank.astype(np.float64), queries.astype(np.float64), k)
    np.testing.assert_array_equal(idx32, expected)
    np.testing.assert_array_equal(idx64, expected)


def test_exact_ties_go_to_the_lower_bank_index() -> None:
    bank = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    sims, idx = cosine_topk(bank, np.array([[1.0, 1.0]]), 4)
    np.testing.assert_array_equal(idx, [[4, 0, 1, 2]])
    np.testing.assert_allclose(sims, [[1.0, 0.5**0.5, 0.5**0.5, 0.5**0.5]])
    _, reversed_idx = cosine_topk(bank[::-1].copy(), np.array([[1.0, 1.0]]), 4)
    np.testing.assert_array_equal(reversed_idx, [[0, 1, 2, 3]])


def test_center_transform_subtracts_the_bank_mean() -> None:
    # Raw, the query points nearest row 2; minus the bank mean (10, 0.3) rows 0 and 2 both point along +y
    # like the query (a tie, lower index first) and row 1 points the other way.
    bank = np.array([[10.0, 1.0], [10.0, -1.0], [10.0, 0.9]], dtype=np.float32)
    query = np.array([[10.0, 0.8]], dtype=np.float32)
    raw_sims, raw_idx = cosine_topk(*transformed(bank, query, "raw"), 3)
    centred_sims, centred_idx = cosine_topk(*transformed(bank, query, "center"), 3)
    np.testing.assert_array_equal(raw_idx, [[2, 0, 1]])
    np.testing.assert_array_equal(centred_idx, [[0, 2, 1]])
    np.testing.assert_allclose(centred_sims, [[1.0, 1.0, -1.0]])
    assert raw_sims.min() > 0.98
    train, test = _videos(bank, [10.0, 20.0, 30.0]), _videos(query, [0.0])
    predicted = {}
    for transform in ("raw", "center"):
        config = KnnConfig(k=1, feature_transform=transform, ci_resamples=0)
        predicted[transform] = run_knn(train, train, test, get_task("ef"), config).predictions["prediction"].item()
    assert predicted == {"raw": 30.0, "center": 10.0}
