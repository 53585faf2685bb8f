"""Linear / MLP probes: one-pass grid vs per-head PyTorch training, selection, early stopping, aggregation, config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import r2_score
from torch import nn

from echobench.data.tasks import get_task
from echobench.errors import UserError
from echobench.metrics import classification_metrics, regression_metrics
from echobench.protocols.base import FeatureSet
from echobench.protocols.probe import FittedProbe, ProbeConfig, fit_probe, primary_metric, run_probe
from echobench.protocols.repeat import repeat_over_seeds

SPECS = Path(__file__).resolve().parents[1] / "protocols"
EF = get_task("ef")
EF_BINARY = get_task("ef_binary")


def _split(features: np.ndarray, targets: np.ndarray, clip_video: list[int] | None = None) -> FeatureSet:
    clip_video = list(range(len(features))) if clip_video is None else clip_video
    return FeatureSet(
        features=np.asarray(features, dtype=np.float32),
        clip_video=np.asarray(clip_video),
        video_ids=[f"v{i}" for i in range(max(clip_video) + 1)],
        targets=np.asarray(targets),
    )


def _regression_splits(seed: int, dim: int, noise: float, sizes: tuple[int, int, int] = (60, 30, 30)):
    """EF-like targets linear in the features (plus noise), for train, val and test."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=dim)
    splits = []
    for n in sizes:
        x = rng.normal(size=(n, dim)) * 3.0 + 1.0
        splits.append(_split(x, 55.0 + 4.0 * x @ weights + noise * rng.normal(size=n)))
    return splits


def _cfg(**kw: object) -> ProbeConfig:
    """The lr x weight-decay grid trainer (``sgd``); linear heads default to the closed form (test_probe_planted)."""
    return ProbeConfig(**{"ci_resamples": 0, "solver": "sgd", **kw})


@dataclasses.dataclass
class _Reference:
    best_epoch: int
    best_mae: float
    curve: list[float]
    val_pred: np.ndarray


def _reference_run(
    train: FeatureSet, val: FeatureSet, widths: list[int], lr: float, wd: float, cfg: ProbeConfig, seed: int
) -> _Reference:
    """One regression head trained the plain way: nn.Linear + torch.optim.AdamW, early stopping on val MAE.

    Initialisation and shuffling follow the documented order of draws from ``torch.Generator(seed)``.
    """
    gen = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        bound = fan_in**-0.5
        w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
        layer = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            layer.weight.copy_(w.T)
            layer.bias.copy_(b)
        modules += [layer, nn.ReLU()]
    model = nn.Sequential(*modules[:-1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    raw = torch.from_numpy(train.features)
    mean, std = raw.mean(0), raw.std(0, correction=0)
    x, xv = (raw - mean) / std, (torch.from_numpy(val.features) - mean) / std
    mu, sd = train.targets.mean(), train.targets.std()
    y = torch.from_numpy(((train.targets - mu) / sd).astype(np.float32))
    best = _Reference(0, np.inf, [], np.array([]))
    for epoch in range(1, cfg.epochs + 1):
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
            optimiser.zero_grad()
            nn.functional.mse_loss(model(x[idx])[:, 0], y[idx]).backward()
            optimiser.step()
        with torch.no_grad():
            pred = model(xv)[:, 0].double().numpy() * sd + mu
        mae = regression_metrics(val.targets, pred)["mae"]
        best.curve.append(mae)
        if mae < best.best_mae:
            best.best_epoch, best.best_mae, best.val_pred = epoch, mae, pred
        if epoch - best.best_epoch >= cfg.patience:
            break
    return best


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_one_pass_grid_equals_each_head_trained_alone(head: str) -> None:
    train, val, _ = _regression_splits(seed=1, dim=5, noise=2.0)
    cfg = _cfg(
        head=head, hidden=(8, 4), lrs=(3e-3, 3e-2), weight_decays=(0.0, 0.5), epochs=25, batch_size=16, patience=4
    )
    grid = fit_probe(train, val, EF, cfg, seed=3).grid
    widths = [5, *((8, 4) if head == "mlp" else ()), 1]
    for row in grid.itertuples():
        ref = _reference_run(train, val, widths, row.lr, row.weight_decay, cfg, seed=3)
        assert row.epoch == ref.best_epoch
        assert row.val_mae == pytest.approx(ref.best_mae, rel=1e-4)
        alone = fit_probe(train, val, EF, dataclasses.replace(cfg, lrs=(row.lr,), weight_decays=(row.weight_decay,)), 3)
        assert alone.epoch == ref.best_epoch
        np.testing.assert_allclose(alone.predict(val)[0], ref.val_pred, rtol=1e-4)
    # Distinct settings really trained distinct heads (not one head copied).
    assert grid["val_mae"].nunique() == len(grid)


def test_linearly_separable_problem_reaches_accuracy_one() -> None:
    rng = np.random.default_rng(0)

    def separable(n: int) -> FeatureSet:
        labels = rng.integers(0, 2, size=n)
        x = rng.normal(size=(n, 3))
        x[:, 0] = np.where(labels == 1, 1.0, -1.0) * rng.uniform(1.0, 3.0, size=n)
        return _split(x, labels.astype(np.int64))

    res = run_probe(
        separable(80), separable(40), separable(40), EF_BINARY, _cfg(lrs=(1e-2,), weight_decays=(0.0,), batch_size=16)
    )
    assert res.metrics["accuracy"] == 1.0
    assert res.metrics["auroc"] == 1.0
    assert res.val_metrics["balanced_accuracy"] == 1.0


def test_regression_recovers_a_linear_target() -> None:
    train, val, test = _regression_splits(seed=2, dim=4, noise=0.0, sizes=(200, 50, 50))
    res = run_probe(train, val, test, EF, _cfg(lrs=(1e-2, 3e-2), weight_decays=(0.0,), epochs=150, batch_size=32))
    assert res.metrics["r2"] > 0.99
    np.testing.assert_allclose(res.predictions["prediction"], test.targets, atol=0.05 * test.targets.std())


def test_early_stopping_keeps_the_best_validation_epoch() -> None:
    # Train on y = 2x but validate on y = x: as the head learns the training slope, validation first improves
    # (from the random init) and then gets worse.
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(64, 1)), rng.normal(size=(32, 1))
    train, val = _split(x, 2.0 * x[:, 0]), _split(xv, 1.0 * xv[:, 0])
    cfg = _cfg(lrs=(0.02,), weight_decays=(0.0,), epochs=200, batch_size=16, patience=5)
    ref = _reference_run(train, val, [1, 1], 0.02, 0.0, cfg, seed=0)
    probe = fit_probe(train, val, EF, cfg, seed=0)
    assert 1 < probe.epoch == ref.best_epoch == int(np.argmin(ref.curve)) + 1
    assert len(ref.curve) == probe.epoch + cfg.patience
    assert ref.curve[-1] > ref.curve[probe.epoch - 1]
    np.testing.assert_allclose(probe.predict(val)[0], ref.val_pred, rtol=1e-5)
    assert probe.val_metrics["mae"] == pytest.approx(ref.best_mae, rel=1e-5)
    # Stopping at the best epoch gives the same head: the later, worse epochs were not kept.
    stopped = fit_probe(train, val, EF, dataclasses.replace(cfg, epochs=probe.epoch), seed=0)
    np.testing.assert_array_equal(stopped.predict(val)[0], probe.predict(val)[0])


@pytest.mark.parametrize("task", [EF, EF_BINARY])
def test_selection_never_reads_test_labels(task) -> None:
    train, val, test = _regression_splits(seed=4, dim=6, noise=8.0)
    if task.is_classification:
        train, val, test = (
            dataclasses.replace(s, targets=(s.targets <= 55).astype(np.int64)) for s in (train, val, test)
        )
        poisoned = dataclasses.replace(test, targets=1 - test.targets)
    else:
        poisoned = dataclasses.replace(test, targets=np.random.default_rng(0).normal(size=test.num_videos) * 1e3)
    cfg = _cfg(head="mlp", hidden=(16,), lrs=(1e-3, 1e-2), weight_decays=(0.0, 1e-2), epochs=30, batch_size=16)
    clean, dirty = run_probe(train, val, test, task, cfg), run_probe(train, val, poisoned, task, cfg)
    assert clean.chosen == dirty.chosen
    assert clean.val_metrics == dirty.val_metrics
    np.testing.assert_array_equal(clean.predictions["prediction"], dirty.predictions["prediction"])
    assert clean.metrics != dirty.metrics


def test_seeds_give_per_seed_lists_and_their_mean() -> None:
    train, val, test = _regression_splits(seed=5, dim=4, noise=3.0)
    cfg = _cfg(head="mlp", hidden=(8,), lrs=(1e-3, 1e-2), weight_decays=(0.0,), epochs=20, batch_size=16, seed=7)
    res = repeat_over_seeds(
        lambda s: run_probe(train, val, test, EF, dataclasses.replace(cfg, seed=s, ci_resamples=50)),
        [7, 8, 9],
        resamples=50,
    )
    assert set(res.per_seed) == {"mae", "rmse", "r2"}
    for name, values in res.per_seed.items():
        assert len(values) == 3
        assert res.metrics[name] == pytest.approx(np.mean(values))
    for i, seed in enumerate((7, 8, 9)):
        alone = run_probe(train, val, test, EF, dataclasses.replace(cfg, seed=seed))
        assert res.per_seed["mae"][i] == pytest.approx(alone.metrics["mae"])
        suffix = "" if i == 0 else f"@seed={seed}"
        assert res.chosen[f"lr{suffix}"] == alone.chosen["lr"]
        assert res.chosen[f"epoch{suffix}"] == alone.chosen["epoch"]
    assert len({res.per_seed["mae"][0], res.per_seed["mae"][1]}) == 2
    # The prediction table is the first seed's; the interval is that of the three seeds' mean, every seed scored
    # on the same resamples (recomputed here with scikit-learn on numpy's draws).
    runs = [run_probe(train, val, test, EF, dataclasses.replace(cfg, seed=s, ci_resamples=50)) for s in (7, 8, 9)]
    assert res.predictions.equals(runs[0].predictions)
    draws = np.random.default_rng(7).integers(0, len(test.targets), size=(50, len(test.targets)))
    r2_of_mean = [
        np.mean([r2_score(test.targets[d], run.predictions["prediction"].to_numpy()[d]) for run in runs]) for d in draws
    ]
    assert res.ci.keys() == {"mae", "rmse", "r2"}
    assert res.ci["r2"] == pytest.approx(tuple(np.percentile(r2_of_mean, [2.5, 97.5])), abs=1e-12)
    assert res.ci["r2"] != pytest.approx(runs[0].ci["r2"])


def _hand_probe(aggregate: str) -> FittedProbe:
    """A binary linear head whose logits are (0, x): the positive-class probability of a clip is sigmoid(x)."""
    weight = torch.tensor([[[0.0, 1.0]]])
    return FittedProbe(
        task=EF_BINARY,
        aggregate=aggregate,  # type: ignore[arg-type]
        layers=[(weight, torch.zeros(1, 2))],
        feature_mean=torch.zeros(1),
        feature_std=torch.ones(1),
        target_mean=0.0,
        target_std=1.0,
        lr=0.0,
        weight_decay=0.0,
        epoch=0,
        val_metrics={},
        grid=pd.DataFrame(),
    )


def test_any_and_mean_aggregation_on_a_hand_made_example() -> None:
    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    # Video 0: clip probabilities 0.9, 0.1, 0.2; video 1: 0.3, 0.4.
    probs = [0.9, 0.1, 0.2, 0.3, 0.4]
    fs = _split(np.array([[logit(p)] for p in probs]), np.array([1, 0]), clip_video=[0, 0, 0, 1, 1])
    pred, score = _hand_probe("mean").predict(fs)
    np.testing.assert_array_equal(pred, [0, 0])
    np.testing.assert_allclose(score, [0.4, 0.35])
    pred, score = _hand_probe("any").predict(fs)
    np.testing.assert_array_equal(pred, [1, 0])
    np.testing.assert_allclose(score, [0.9, 0.4])


def test_multi_clip_videos_train_on_every_clip_and_report_per_video() -> None:
    train, val, test = _regression_splits(seed=6, dim=3, noise=1.0)
    doubled = _split(np.repeat(test.features, 2, axis=0), test.targets, clip_video=list(np.repeat(np.arange(30), 2)))
    res = run_probe(train, val, doubled, EF, _cfg(lrs=(1e-2,), weight_decays=(0.0,), epochs=20))
    single = run_probe(train, val, test, EF, _cfg(lrs=(1e-2,), weight_decays=(0.0,), epochs=20))
    assert len(res.predictions) == 30
    np.testing.assert_allclose(res.predictions["prediction"], single.predictions["prediction"], rtol=1e-6)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "auroc", "f1"])
def test_primary_metric_of_all_heads_matches_classification_metrics(metric: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=40)
    score = rng.uniform(size=(4, 40))
    pred = (score > 0.4).astype(np.int64)
    task = dataclasses.replace(EF_BINARY, primary_metric=metric)
    expected = [classification_metrics(y, pred[h], score[h])[metric] for h in range(4)]
    np.testing.assert_allclose(primary_metric(task, y, pred, score), expected)


@pytest.mark.parametrize("metric", ["mae", "rmse", "r2"])
def test_primary_metric_of_all_heads_matches_regression_metrics(metric: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=30) * 10 + 50
    pred = y + rng.normal(size=(3, 30)) * 4
    task = dataclasses.replace(EF, primary_metric=metric)
    expected = [regression_metrics(y, pred[h])[metric] for h in range(3)]
    np.testing.assert_allclose(primary_metric(task, y, pred, None), expected)


@pytest.mark.parametrize(("name", "version", "clips"), [("linear", 3, 4), ("mlp", 2, 1)])
def test_yaml_specs_load_into_the_config(name: str, version: int, clips: int) -> None:
    spec = yaml.safe_load((SPECS / f"{name}.yaml").read_text())
    assert (spec["name"], spec["version"], spec["family"], spec["task"]) == (name, version, "probe", "ef")
    assert spec["eval_clips"] == {"start": "evenly", "num_clips": clips}
    cfg = ProbeConfig.from_dict(spec["config"])
    assert cfg == ProbeConfig(head=name)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": [0.1]}, "did you mean 'lrs'"),
        ({"head": "conv"}, "head must be one of 'linear', 'mlp'"),
        ({"hidden": []}, "hidden"),
        ({"hidden": [256, 0]}, "hidden"),
        ({"lrs": []}, "lrs"),
        ({"lrs": [0.1, -1.0]}, "lrs must all be > 0"),
        ({"weight_decays": [-0.1]}, "weight_decays must all be >= 0"),
        ({"weight_decays": ["big"]}, "weight_decays"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"patience": 0}, "patience"),
        ({"aggregate": "max"}, "aggregate must be one of 'mean', 'any'"),
        ({"ci_resamples": -1}, "ci_resamples"),
    ],
)
def test_bad_config_is_a_user_error(values: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        ProbeConfig.from_dict(values)


def test_bad_inputs_are_user_errors() -> None:
    train, val, test = _regression_splits(seed=0, dim=3, noise=1.0)
    with pytest.raises(UserError, match="aggregate 'any' needs a binary classification task"):
        run_probe(train, val, test, EF, _cfg(aggregate="any"))
    with pytest.raises(UserError, match="feature dimensions differ"):
        run_probe(train, _split(val.features[:, :2], val.targets), test, EF, _cfg())
    with pytest.raises(UserError, match="class indices"):
        run_probe(train, val, test, EF_BINARY, _cfg())
    missing = dataclasses.replace(test, targets=np.where(np.arange(30) == 0, np.nan, test.targets))
    with pytest.raises(UserError, match="missing targets"):
        run_probe(train, val, missing, EF, _cfg())
