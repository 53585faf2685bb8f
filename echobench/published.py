"""Published numbers: normalising the checked transcription of the seed papers' tables into echobench terms.

The transcription keeps values and units as printed (e.g. EchoVisionFM reports EF errors as fractions, other
papers as EF points or percentages). Every normalised row keeps the printed metric, value and source, and states
the factor it was multiplied by, so each number traces back to its paper and table. Normalised units follow the
result files: EF errors in EF points (EF in percent), classification and overlap scores as fractions in [0, 1].
Rows whose unit cannot be converted (a target scaling the paper does not state) are kept with
``comparable = false`` and never enter a board.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from echobench.errors import UserError

#: Transcription file stem → (key of the normalised CSV, citation).
PAPERS: dict[str, tuple[str, str]] = {
    "000_35ee34514fc39c3a": (
        "stebler-temporal-mae",
        "Stebler, Sutter, Ozkan, Vogt: Temporal Representation Learning for Ultrasound Analysis using Masked Modeling",
    ),
    "001_a62dff14b816c5b5": (
        "yang-echocardmae",
        "Yang et al.: EchoCardMAE: Video Masked Auto-Encoders Customized for Echocardiography",
    ),
    "002_374944a043fcb97d": (
        "zhang-echovisionfm",
        "Zhang et al.: Echo-Vision-FM: A Pre-training and Fine-tuning Framework for Echocardiogram Videos Vision "
        "Foundation Model",
    ),
    "003_1f67029e44e568fd": (
        "ellis-vjepa-localised-loss",
        "Ellis et al.: Self-Supervised Ultrasound-Video Segmentation with Feature Prediction and 3D Localised Loss",
    ),
    "004_ced12cdfac9d4734": (
        "mishra-discover",
        "Mishra et al.: Self-supervised Learning of Echocardiographic Video Representations via Online Cluster "
        "Distillation (DISCOVER)",
    ),
}

EF_POINTS = "EF points"
FRACTION = "fraction"


@dataclass(frozen=True)
class MetricRule:
    """How a printed metric becomes an echobench metric: ``value = printed × factor`` in ``unit``."""

    metric: str
    factor: float
    unit: str
    comparable: bool = True


def _rules() -> dict[str, MetricRule]:
    rules: dict[str, MetricRule] = {}
    fractions = {
        "F1": "f1",
        "recall": "recall",
        "precision": "precision",
        "accuracy": "accuracy",
        "AUROC": "auroc",
        "AUC": "auroc",
        "DSC": "dice",
        "Dice": "dice",
        "JI": "iou",
        "PPV": "ppv",
        "R2": "r2",
        "pearson_corr": "pearson_r",
    }
    for printed, metric in fractions.items():
        rules[printed] = MetricRule(metric, 1.0, FRACTION)
    percents = {
        "F1_pct": "f1",
        "accuracy_pct": "accuracy",
        "balanced_accuracy_pct": "balanced_accuracy",
        "precision_pct": "precision",
        "recall_pct": "recall",
        "sensitivity_pct": "recall",
        "specificity_pct": "specificity",
        "AUC_pct": "auroc",
        "mDice_pct": "dice",
        "mIoU_pct": "iou",
        "top1_accuracy_pct": "top1_accuracy",
    }
    for printed, metric in percents.items():
        rules[printed] = MetricRule(metric, 0.01, FRACTION)
    for printed in ("DSC", "JI", "PPV", "recall"):
        base = rules[printed]
        rules[f"{printed}_sd_across_test_videos"] = MetricRule(f"{base.metric}_sd", 1.0, FRACTION)
    rules["MAE_EF_points"] = MetricRule("mae", 1.0, EF_POINTS)
    rules["RMSE_EF_points"] = MetricRule("rmse", 1.0, EF_POINTS)
    # EF as a fraction (0-1): errors × 100 are EF points; a squared error × 100².
    rules["MAE_EF_fraction"] = MetricRule("mae", 100.0, EF_POINTS)
    rules["RMSE_EF_fraction"] = MetricRule("rmse", 100.0, EF_POINTS)
    rules["MSE_EF_fraction"] = MetricRule("mse", 10000.0, "EF points squared")
    for printed in ("MAE", "MSE", "RMSE"):
        rules[f"{printed}_scaled_units"] = MetricRule(printed.lower(), 1.0, "unstated target scaling", False)
    return rules


METRIC_RULES = _rules()

DATASETS = {
    "EchoNet-Dynamic": "echonet-dynamic",
    "CAMUS": "camus",
    "CAMUS A4C good+medium quality": "camus-good-medium",
    "CAMUS A4C poor quality": "camus-poor",
    "CAMUS (validation set)": "camus (validation split)",
    "HMC-QU (A4C)": "hmc-qu",
    "RVENet": "rvenet",
}

TASKS = {
    "EF binary: reduced (EF<=50%) vs normal (EF>50%)": "ef_binary",
    "EF binary: EF threshold 50%": "ef_binary",
    "EF classification (threshold 50%)": "ef_binary",
    "EF abnormal (EF<45% or EF>75%) vs normal": "ef_anomaly",
    "EF regression": "ef",
    "LVEF regression": "ef",
    "EDV regression (target scaling not stated)": "edv",
    "ESV regression (target scaling not stated)": "esv",
    "LV segmentation": "lv_seg",
    "LV+myocardium+LA segmentation": "lv_seg",
    "segmentation LV endo / LV epi / LA wall (overall)": "lv_seg",
    "segmentation LV endo / LV epi / LA": "lv_seg",
    "myocardial infarction classification": "mi",
}

#: (pattern in the printed protocol, echobench protocol, frozen encoder); first match wins.
PROTOCOLS: tuple[tuple[str, str, bool], ...] = (
    (r"video anomaly detection", "anomaly-detection", True),
    (r"zero-shot (weighted )?kNN", "knn", True),
    (r"attentive probe", "segmentation", True),
    (r"frozen backbone \+ linear \+ Conv2D", "segmentation", True),
    (r"linear probe", "linear", True),
    (r"frozen encoder \+ MLP head", "mlp", True),
    (r"fine-tune last 3 encoder blocks", "finetune-partial", False),
    (r"fully supervised|specialised segmentation", "supervised", False),
    (r"fine-tune|fine-tuned", "finetune-full", False),
)


@dataclass(frozen=True)
class PublishedRow:
    method: str
    dataset: str
    task: str
    protocol: str
    frozen: bool
    label_fraction: float
    metric: str
    value: float
    unit: str
    comparable: bool
    factor: float
    metric_as_printed: str
    value_as_printed: str
    dataset_as_printed: str
    task_as_printed: str
    setting: str
    paper: str
    citation: str
    source: str


COLUMNS = tuple(f.name for f in fields(PublishedRow))


def normalise_protocol(printed: str) -> tuple[str, bool, float]:
    """``(protocol, frozen, label_fraction)`` of a printed protocol description."""
    fraction_match = re.search(r"(\d+)% training labels", printed)
    fraction = int(fraction_match.group(1)) / 100.0 if fraction_match else 1.0
    for pattern, protocol, frozen in PROTOCOLS:
        if re.search(pattern, printed, flags=re.IGNORECASE):
            return protocol, frozen, fraction
    raise UserError(f"published protocol {printed!r} matches no rule in echobench.published.PROTOCOLS; add one")


def normalise(row: dict[str, str]) -> PublishedRow:
    """One transcription row (method, dataset, protocol, task, metric, value, source) in echobench terms."""
    source = row["source"]
    stem = source.split()[0].removesuffix(".txt")
    if stem not in PAPERS:
        raise UserError(f"published source {source!r} names no known paper; add it to echobench.published.PAPERS")
    if row["metric"] not in METRIC_RULES:
        raise UserError(f"published metric {row['metric']!r} has no unit rule; add it to METRIC_RULES")
    rule = METRIC_RULES[row["metric"]]
    protocol, frozen, fraction = normalise_protocol(row["protocol"])
    paper, citation = PAPERS[stem]
    return PublishedRow(
        method=row["method"],
        dataset=DATASETS.get(row["dataset"], row["dataset"]),
        task=TASKS.get(row["task"], row["task"]),
        protocol=protocol,
        frozen=frozen,
        label_fraction=fraction,
        metric=rule.metric,
        value=round(float(row["value"]) * rule.factor, 10),
        unit=rule.unit,
        comparable=rule.comparable,
        factor=rule.factor,
        metric_as_printed=row["metric"],
        value_as_printed=row["value"],
        dataset_as_printed=row["dataset"],
        task_as_printed=row["task"],
        setting=row["protocol"],
        paper=paper,
        citation=citation,
        source=source,
    )


def normalise_file(source: Path) -> dict[str, list[PublishedRow]]:
    """Every row of the transcription CSV, normalised and grouped by paper key (input order kept)."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = [normalise(r) for r in csv.DictReader(handle)]
    grouped: dict[str, list[PublishedRow]] = {}
    for row in rows:
        grouped.setdefault(row.paper, []).append(row)
    return grouped


def write_rows(path: Path, rows: Iterable[PublishedRow]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def read_rows(path: Path) -> list[PublishedRow]:
    """A normalised published CSV (``leaderboards/published/*.csv``)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    except OSError as exc:
        raise UserError(f"cannot read published numbers {path}: {exc.strerror}") from None
    out = []
    for number, record in enumerate(records, start=2):
        try:
            out.append(
                PublishedRow(
                    **{
                        **record,
                        "frozen": record["frozen"] == "True",
                        "comparable": record["comparable"] == "True",
                        "label_fraction": float(record["label_fraction"]),
                        "value": float(record["value"]),
                        "factor": float(record["factor"]),
                    }
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path} line {number} is not a normalised published row ({exc}); regenerate it") from None
    return out
