"""Published numbers: normalising the checked transcription of the seed papers' tables into echobench terms.

The transcription keeps values and units as printed (e.g. EchoVisionFM reports EF errors as fractions, other
papers as EF points or percentages). Every normalised row keeps the printed metric, value and source, and states
the factor it was multiplied by, so each number traces back to its paper and table. Normalised units follow the
result files: EF errors in EF points (EF in percent), classification and overlap scores as fractions in [0, 1].
Rows whose unit cannot be converted (a target scaling the paper does not state) are kept with
``comparable = false`` and never enter a board.

Printed F1, precision and recall mean different things in different papers (METHODS.md, "Standard evaluation
facts"): the class they score, or a macro average. Each row states its ``definition`` (:data:`DEFINITIONS`) and is
mapped to the echobench metric of that definition (:func:`echobench_metric`), so it is compared only with the
same quantity. The definition is a property of the paper (:data:`PAPER_DEFINITIONS`, with the evidence).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from echobench.config import did_you_mean
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
    """How a printed metric becomes an echobench metric: ``value = printed × factor`` in ``unit``.

    ``metric`` is the echobench metric, or — when ``per_class`` — the measure (``f1``, ``precision``,
    ``recall``, ``sensitivity``, ``specificity``) whose echobench metric depends on the paper's definition.
    """

    metric: str
    factor: float
    unit: str
    comparable: bool = True
    per_class: bool = False


#: Printed names of the class-dependent classification measures → the measure.
_PER_CLASS = {
    "F1": "f1",
    "F1_pct": "f1",
    "precision": "precision",
    "precision_pct": "precision",
    "recall": "recall",
    "recall_pct": "recall",
    "sensitivity_pct": "sensitivity",
    "specificity_pct": "specificity",
}


def _rules() -> dict[str, MetricRule]:
    rules: dict[str, MetricRule] = {}
    fractions = {
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
        "accuracy_pct": "accuracy",
        "balanced_accuracy_pct": "balanced_accuracy",
        "AUC_pct": "auroc",
        "mDice_pct": "dice",
        "mIoU_pct": "iou",
        "top1_accuracy_pct": "top1_accuracy",
    }
    for printed, metric in percents.items():
        rules[printed] = MetricRule(metric, 0.01, FRACTION)
    for printed, measure in _PER_CLASS.items():
        rules[printed] = MetricRule(measure, 0.01 if printed.endswith("_pct") else 1.0, FRACTION, per_class=True)
    # Segmentation papers print per-image SDs of overlap measures (recall here is a pixel overlap).
    for printed, metric in (("DSC", "dice"), ("JI", "iou"), ("PPV", "ppv"), ("recall", "recall")):
        rules[f"{printed}_sd_across_test_videos"] = MetricRule(f"{metric}_sd", 1.0, FRACTION)
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

POSITIVE = "positive"
NEGATIVE = "negative"
MACRO = "macro"
SENSITIVITY_SPECIFICITY = "sensitivity_specificity"
NOT_APPLICABLE = "n/a"
#: What a published row's metric means. ``positive``: F1 / precision / recall of class 1 (the positive class of
#: echobench's tasks: reduced or abnormal EF, MI); ``negative``: of class 0 (normal); ``macro``: the unweighted
#: mean over both classes; ``sensitivity_specificity``: sensitivity (recall of class 1) or specificity (recall
#: of class 0), named as such; ``n/a``: a metric that does not depend on which class is positive (accuracy,
#: balanced accuracy, AUROC) or is no classification metric (regression, segmentation).
DEFINITIONS = (POSITIVE, NEGATIVE, MACRO, SENSITIVITY_SPECIFICITY, NOT_APPLICABLE)

#: The echobench metric (:func:`echobench.metrics.classification_metrics`) of each measure under each definition.
_METRIC_OF: dict[str, dict[str, str]] = {
    POSITIVE: {"f1": "f1", "precision": "precision", "recall": "recall"},
    NEGATIVE: {"f1": "f1_negative", "precision": "precision_negative", "recall": "specificity"},
    MACRO: {"f1": "f1_macro", "precision": "precision_macro", "recall": "recall_macro"},
    SENSITIVITY_SPECIFICITY: {"sensitivity": "recall", "specificity": "specificity"},
}


@dataclass(frozen=True)
class PaperDefinition:
    """Which class a paper's printed F1, precision and recall score (``definition``, one of
    :data:`DEFINITIONS`), and how that was established. Sensitivity and specificity name their class in every
    paper (``sensitivity_specificity``)."""

    definition: str
    evidence: str


#: Paper key (of :data:`PAPERS`) → the definition of its printed F1, precision and recall.
PAPER_DEFINITIONS: dict[str, PaperDefinition] = {
    "stebler-temporal-mae": PaperDefinition(
        NEGATIVE,
        "Table 1 prints F1, recall, precision and accuracy of one class: the prevalence of that class implied by "
        "recall, precision and accuracy, (1 - acc) / (1 - 2R + R/P), is 0.58-0.89 over its 7 rows (0.77 in the "
        "first), so it is the majority class, normal EF (EF <= 50 % is the minority of EchoNet-Dynamic); a macro "
        "reading is ruled out by the first row (accuracy 0.80 below a macro recall of 0.90 needs a class with "
        "recall under 0.63, impossible when the mean recall is 0.90). Table 2 quotes Zhang et al. (EchoVisionFM), "
        "also of the normal class.",
    ),
    "yang-echocardmae": PaperDefinition(
        POSITIVE,
        "Table 4 (HMC-QU: 72 MI of 109 videos) is consistent only with MI as the positive class: for EchoCardMAE, "
        "accuracy from sensitivity and specificity at that prevalence is 0.927 (printed 0.9263), precision 0.934 "
        "(0.9354) and F1 0.945 (0.9451). The HMC-QU code is not released (code: m1dsolo/EchoCardMAE README.md).",
    ),
    "zhang-echovisionfm": PaperDefinition(
        NEGATIVE,
        "code: ZiyangZhang0511/echo_vision datasets/echonet.py labels EF >= 50 % as 1 and utilities/utils.py "
        "compute_metrics calls f1_score with its default pos_label=1, so F1 is that of normal EF; Table 1 agrees "
        "(with accuracy 0.84-0.89, an F1 of 0.90-0.93 needs the scored class at 74 % prevalence or more).",
    ),
    "ellis-vjepa-localised-loss": PaperDefinition(
        NOT_APPLICABLE, "segmentation only: its recall and PPV are pixel overlaps of the segmented classes."
    ),
    "mishra-discover": PaperDefinition(
        MACRO,
        "code: mdivyanshu97/DISCOVR engine/engine_for_pretraining.py knn_evaluation scores F1, precision and "
        "recall with scikit-learn's average='macro'; Table 7 prints recall equal to balanced accuracy in every row.",
    ),
}


def _rule_of(printed_metric: str) -> MetricRule:
    if printed_metric not in METRIC_RULES:
        raise UserError(
            f"published metric {printed_metric!r} has no unit rule{did_you_mean(printed_metric, METRIC_RULES)}; "
            "add it to echobench.published.METRIC_RULES"
        )
    return METRIC_RULES[printed_metric]


def definition_of(paper_key: str, printed_metric: str) -> str:
    """The definition (one of :data:`DEFINITIONS`) of ``printed_metric`` (a name of :data:`METRIC_RULES`, e.g.
    ``"F1_pct"``) as the paper ``paper_key`` (e.g. ``"mishra-discover"``) reports it."""
    if paper_key not in PAPER_DEFINITIONS:
        raise UserError(
            f"unknown paper {paper_key!r}{did_you_mean(paper_key, PAPER_DEFINITIONS)}; "
            f"known papers: {', '.join(PAPER_DEFINITIONS)}"
        )
    rule = _rule_of(printed_metric)
    if not rule.per_class:
        return NOT_APPLICABLE
    if rule.metric in _METRIC_OF[SENSITIVITY_SPECIFICITY]:
        return SENSITIVITY_SPECIFICITY
    return PAPER_DEFINITIONS[paper_key].definition


def echobench_metric(paper_key: str, printed_metric: str) -> str:
    """The echobench metric that ``printed_metric`` of paper ``paper_key`` is the same quantity as (e.g.
    Temporal MAE's ``"F1"`` → ``"f1_negative"``, DISCOVER's ``"F1_pct"`` → ``"f1_macro"``)."""
    definition = definition_of(paper_key, printed_metric)
    rule = METRIC_RULES[printed_metric]
    return rule.metric if definition == NOT_APPLICABLE else _METRIC_OF[definition][rule.metric]


def positive_reading(printed_metric: str) -> str:
    """The echobench metric ``printed_metric`` would be if its paper scored class 1: the board column a reader
    looks under for it (a printed F1 is looked for under ``f1``)."""
    rule = _rule_of(printed_metric)
    if not rule.per_class:
        return rule.metric
    return _METRIC_OF[POSITIVE].get(rule.metric) or _METRIC_OF[SENSITIVITY_SPECIFICITY][rule.metric]


def describe(definition: str, classes: tuple[str, ...] = ()) -> str:
    """A short phrase for a definition, naming the task's classes when ``classes`` (class 0, class 1) is given."""
    name = {i: f": {c}" for i, c in enumerate(classes)}
    return {
        POSITIVE: f"class 1{name.get(1, '')}",
        NEGATIVE: f"class 0{name.get(0, '')}",
        MACRO: "macro average over both classes",
        SENSITIVITY_SPECIFICITY: "sensitivity / specificity: recall of class 1 / class 0",
        NOT_APPLICABLE: "no class definition",
    }[definition]


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
    definition: str
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
    """One transcription row (method, dataset, protocol, task, metric, value, source) in echobench terms; the
    metric is that of the paper's definition (:func:`echobench_metric`)."""
    source = row["source"]
    stem = source.split()[0].removesuffix(".txt")
    if stem not in PAPERS:
        raise UserError(f"published source {source!r} names no known paper; add it to echobench.published.PAPERS")
    rule = _rule_of(row["metric"])
    protocol, frozen, fraction = normalise_protocol(row["protocol"])
    paper, citation = PAPERS[stem]
    return PublishedRow(
        method=row["method"],
        dataset=DATASETS.get(row["dataset"], row["dataset"]),
        task=TASKS.get(row["task"], row["task"]),
        protocol=protocol,
        frozen=frozen,
        label_fraction=fraction,
        metric=echobench_metric(paper, row["metric"]),
        definition=definition_of(paper, row["metric"]),
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
    """A normalised published CSV (``leaderboards/published/*.csv``).

    A file without the ``definition`` column (written before rows carried their metric definition), or whose
    row of a known paper disagrees with :func:`echobench_metric`, is stale: a :class:`UserError` asks to
    regenerate it rather than compare a number with another metric.
    """
    regenerate = "regenerate it: python scripts/normalise_published.py PATH/TO/published.csv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            records = list(reader)
            header = reader.fieldnames or []
    except OSError as exc:
        raise UserError(f"cannot read published numbers {path}: {exc.strerror}") from None
    if records and "definition" not in header:
        raise UserError(f"{path} has no 'definition' column (it predates metric definitions); {regenerate}")
    out = []
    for number, record in enumerate(records, start=2):
        try:
            row = PublishedRow(
                **{
                    **record,
                    "frozen": record["frozen"] == "True",
                    "comparable": record["comparable"] == "True",
                    "label_fraction": float(record["label_fraction"]),
                    "value": float(record["value"]),
                    "factor": float(record["factor"]),
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path} line {number} is not a normalised published row ({exc}); regenerate it") from None
        if row.definition not in DEFINITIONS:
            raise UserError(f"{path} line {number}: definition {row.definition!r} is not one of {DEFINITIONS}")
        if row.paper in PAPER_DEFINITIONS:
            printed = row.metric_as_printed
            expected = (echobench_metric(row.paper, printed), definition_of(row.paper, printed))
            if (row.metric, row.definition) != expected:
                raise UserError(
                    f"{path} line {number}: {row.paper}'s {printed} is {expected[0]} ({expected[1]}) "
                    f"but the file says {row.metric} ({row.definition}); {regenerate}"
                )
        out.append(row)
    return out
