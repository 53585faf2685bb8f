"""Hand-made result files (JSON + predictions CSV) for leaderboard and compare tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echobench.metrics import classification_metrics, regression_metrics


def write_result(
    folder: Path,
    method: str,
    protocol: str,
    task: str,
    predictions: pd.DataFrame | None,
    *,
    name: str | None = None,
    per_seed: dict[str, list[float]] | None = None,
    metrics: dict[str, float] | None = None,
    pretrain_seed: int = 0,
    dataset: str = "synthecho",
    **extra: Any,
) -> Path:
    """A result file like ``echobench run`` writes; metrics are computed from ``predictions`` unless given."""
    if metrics is None:
        assert predictions is not None
        if "score" in predictions.columns:
            metrics = classification_metrics(
                predictions["target"].to_numpy(), predictions["prediction"].to_numpy(), predictions["score"].to_numpy()
            )
        else:
            metrics = regression_metrics(predictions["target"].to_numpy(), predictions["prediction"].to_numpy())
    stem = name or f"{protocol}-{task}"
    path = folder / method / f"ckpt{pretrain_seed}" / dataset / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "schema": 1,
        "method": method,
        "protocol": protocol,
        "task": task,
        "dataset": dataset,
        "metrics": metrics,
        "ci95": {k: [v - 0.1, v + 0.1] for k, v in metrics.items()},
        "per_seed": per_seed or {},
        "seeds": 1,
        "method_config": {"size": 32},
        "pretrain_config": {"steps": 5, "seed": pretrain_seed},
        "protocol_config": {"seed": 0},
        "evaluated_on_pretraining_split": False,
        "predictions_csv": None,
        **extra,
    }
    if predictions is not None:
        predictions.to_csv(path.with_name(f"{stem}.predictions.csv"), index=False)
    path.write_text(json.dumps(record))
    return path


def regression_frame(noise: float, seed: int, n: int = 40, offset: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    target = rng.uniform(20, 75, n)
    return pd.DataFrame(
        {
            "video_id": [f"V{i:03d}" for i in range(n)],
            "target": target,
            "prediction": target + offset + rng.normal(0, noise, n),
        }
    )


def classification_frame(quality: float, seed: int, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    target = (np.arange(n) % 3 == 0).astype(int)
    score = np.clip(quality * target + (1 - quality) * rng.uniform(0, 1, n), 0, 1)
    return pd.DataFrame(
        {
            "video_id": [f"V{i:03d}" for i in range(n)],
            "target": target,
            "prediction": (score >= 0.5).astype(int),
            "score": score,
        }
    )
