"""Published numbers: explicit unit normalisation, metric definitions per paper, and traceability of every
committed row."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from echobench.errors import UserError
from echobench.metrics import classification_metrics
from echobench.published import (
    DEFINITIONS,
    METRIC_RULES,
    NOT_APPLICABLE,
    PAPER_DEFINITIONS,
    PAPERS,
    definition_of,
    echobench_metric,
    normalise,
    normalise_protocol,
    read_rows,
)

PUBLISHED = Path(__file__).resolve().parent.parent / "leaderboards" / "published"


def row(**over: str) -> dict[str, str]:
    base = {
        "method": "EchoVisionFM",
        "dataset": "EchoNet-Dynamic",
        "protocol": "full fine-tune (encoder + head), EchoNet upsampled to 224x224",
        "task": "LVEF regression",
        "metric": "MAE_EF_fraction",
        "value": "0.0418",
        "source": "002_374944a043fcb97d.txt Table 2",
    }
    return base | over


def test_ef_errors_printed_as_fractions_become_ef_points():
    r = normalise(row())
    assert (r.metric, r.value, r.unit, r.factor) == ("mae", pytest.approx(4.18), "EF points", 100.0)
    assert (r.dataset, r.task, r.protocol, r.frozen) == ("echonet-dynamic", "ef", "finetune-full", False)
    mse = normalise(row(metric="MSE_EF_fraction", value="0.0030"))
    assert (mse.metric, mse.value) == ("mse", pytest.approx(30.0))


def test_percentages_become_fractions_and_label_fractions_are_read():
    r = normalise(
        row(
            metric="F1_pct",
            value="94.51",
            task="myocardial infarction classification",
            dataset="HMC-QU (A4C)",
            protocol="fine-tune; stratified 5-fold CV",
            source="001_a62dff14b816c5b5.txt Table 4",
        )
    )
    assert (r.metric, r.value, r.dataset, r.task) == ("f1", pytest.approx(0.9451), "hmc-qu", "mi")
    assert normalise_protocol(
        "ViT-L/16 frozen encoder + attentive probe + 2-transposed-conv decoder; 20% training labels"
    ) == ("segmentation", True, 0.2)


def test_unstated_units_are_kept_but_not_comparable_and_unknown_rules_are_errors():
    r = normalise(row(metric="MAE_scaled_units", value="0.27"))
    assert not r.comparable
    with pytest.raises(UserError, match="no unit rule"):
        normalise(row(metric="MAE_furlongs"))
    with pytest.raises(UserError, match="no known paper"):
        normalise(row(source="999_x.txt Table 1"))


def test_every_committed_row_traces_to_a_paper_table_and_its_printed_value():
    files = sorted(PUBLISHED.glob("*.csv"))
    assert len(files) == 5
    for path in files:
        rows = read_rows(path)
        assert rows, path
        for r in rows:
            assert r.paper == path.stem
            assert any(word in r.source for word in ("Table", "Fig.", "Abstract")), r.source
            rule = METRIC_RULES[r.metric_as_printed]
            assert (r.factor, r.unit) == (rule.factor, rule.unit)
            assert r.metric == echobench_metric(r.paper, r.metric_as_printed)
            assert r.definition == definition_of(r.paper, r.metric_as_printed)
            assert r.value == pytest.approx(float(r.value_as_printed) * r.factor)


@pytest.mark.parametrize(
    ("paper", "printed", "definition", "metric"),
    [
        ("stebler-temporal-mae", "F1", "negative", "f1_negative"),
        ("stebler-temporal-mae", "precision", "negative", "precision_negative"),
        ("stebler-temporal-mae", "recall", "negative", "specificity"),
        ("stebler-temporal-mae", "AUROC", "n/a", "auroc"),
        ("stebler-temporal-mae", "accuracy", "n/a", "accuracy"),
        ("zhang-echovisionfm", "F1", "negative", "f1_negative"),
        ("mishra-discover", "F1_pct", "macro", "f1_macro"),
        ("mishra-discover", "precision_pct", "macro", "precision_macro"),
        ("mishra-discover", "recall_pct", "macro", "recall_macro"),
        ("mishra-discover", "balanced_accuracy_pct", "n/a", "balanced_accuracy"),
        ("yang-echocardmae", "sensitivity_pct", "sensitivity_specificity", "recall"),
        ("yang-echocardmae", "specificity_pct", "sensitivity_specificity", "specificity"),
        ("yang-echocardmae", "F1_pct", "positive", "f1"),
        ("yang-echocardmae", "precision_pct", "positive", "precision"),
        ("yang-echocardmae", "MAE_EF_points", "n/a", "mae"),
        ("ellis-vjepa-localised-loss", "recall", "n/a", "recall"),
        ("ellis-vjepa-localised-loss", "DSC", "n/a", "dice"),
    ],
)
def test_each_printed_metric_maps_to_the_echobench_metric_of_its_papers_definition(paper, printed, definition, metric):
    assert definition_of(paper, printed) == definition
    assert echobench_metric(paper, printed) == metric


def test_every_paper_has_a_definition_and_every_classification_mapping_is_an_echobench_metric():
    assert set(PAPER_DEFINITIONS) == {key for key, _ in PAPERS.values()}
    assert {d.definition for d in PAPER_DEFINITIONS.values()} <= set(DEFINITIONS)
    reported = set(classification_metrics(np.array([0, 1]), np.array([0, 1]), np.array([0.0, 1.0])))
    for paper, definition in PAPER_DEFINITIONS.items():
        if definition.definition == NOT_APPLICABLE:
            continue
        for printed, rule in METRIC_RULES.items():
            if rule.per_class:
                assert echobench_metric(paper, printed) in reported, (paper, printed)


def test_unknown_papers_and_metrics_are_one_line_errors():
    with pytest.raises(UserError, match="unknown paper 'mishra-discovr' \\(did you mean 'mishra-discover'\\?\\)"):
        definition_of("mishra-discovr", "F1_pct")
    with pytest.raises(UserError, match="'F1_percent' has no unit rule"):
        echobench_metric("mishra-discover", "F1_percent")


def _committed(paper: str) -> list:
    return read_rows(PUBLISHED / f"{paper}.csv")


def test_discover_table_7_prints_macro_recall_equal_to_balanced_accuracy():
    rows = [r for r in _committed("mishra-discover") if r.source.endswith("Table 7")]
    by_method: dict[str, dict[str, float]] = {}
    for r in rows:
        by_method.setdefault(r.method, {})[r.metric] = r.value
    assert len(by_method) == 4
    for values in by_method.values():
        assert values["recall_macro"] == values["balanced_accuracy"]


def test_temporal_mae_scores_the_majority_class_in_every_row():
    """(1 - accuracy) / (1 - 2R + R/P) is the prevalence of the class that recall R and precision P score; reduced
    EF (class 1) is the minority of EchoNet-Dynamic, so a prevalence above one half is the normal class."""
    by_row: dict[tuple[str, str], dict[str, float]] = {}
    for r in _committed("stebler-temporal-mae"):
        if r.source.endswith("Table 1"):
            by_row.setdefault((r.method, r.setting), {})[r.metric_as_printed] = r.value
    assert len(by_row) == 7
    for values in by_row.values():
        recall, precision = values["recall"], values["precision"]
        assert (1 - values["accuracy"]) / (1 - 2 * recall + recall / precision) > 0.55


def test_echocardmae_hmcqu_rows_are_consistent_with_mi_as_the_positive_class():
    """HMC-QU has 72 MI videos of 109: with MI as class 1, accuracy, precision and F1 follow from sensitivity and
    specificity to within the fold averaging (< 0.01); with normal as the scored class accuracy misses by > 0.02."""

    def implied(prevalence: float, sens: float, spec: float) -> tuple[float, float, float]:
        tp, fp = prevalence * sens, (1 - prevalence) * (1 - spec)
        precision = tp / (tp + fp)
        return tp + (1 - prevalence) * spec, precision, 2 * precision * sens / (precision + sens)

    by_method: dict[str, dict[str, float]] = {}
    for r in _committed("yang-echocardmae"):
        if r.task == "mi":
            by_method.setdefault(r.method, {})[r.metric_as_printed] = r.value
    assert len(by_method) == 3
    for values in by_method.values():
        printed = (values["accuracy_pct"], values["precision_pct"], values["F1_pct"])
        sens, spec = values["sensitivity_pct"], values["specificity_pct"]
        assert implied(72 / 109, sens, spec) == pytest.approx(printed, abs=0.01)
        assert abs(implied(37 / 109, sens, spec)[0] - printed[0]) > 0.02


def test_a_classifier_matching_temporal_mae_row_is_compared_under_f1_negative():
    """1,000 videos, 77.3 % normal: normal recall 0.90, precision 0.85, accuracy 0.80 (Table 1, frame-based MAE,
    frozen encoder). Its class-1 F1 is 0.51; the printed F1 0.87 is the normal class's."""
    tn, fp, fn, tp = 696, 77, 123, 104  # class 0 = normal (773 videos), class 1 = reduced EF (227)
    y = np.repeat([0, 0, 1, 1], [tn, fp, fn, tp])
    pred = np.repeat([0, 1, 0, 1], [tn, fp, fn, tp])
    m = classification_metrics(y, pred, pred.astype(float))
    assert m["specificity"] == pytest.approx(0.90, abs=0.005)
    assert m["precision_negative"] == pytest.approx(0.85, abs=0.005)
    assert m["accuracy"] == pytest.approx(0.80)
    assert m["f1_negative"] == pytest.approx(2 * tn / (2 * tn + fp + fn)) == pytest.approx(0.8744, abs=1e-4)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred)) == pytest.approx(0.5098, abs=1e-4)
    printed = {
        r.metric_as_printed: r
        for r in _committed("stebler-temporal-mae")
        if r.method == "Frame-based MAE" and r.setting.endswith("Base (frozen encoder + MLP head)")
    }
    for name in ("F1", "recall", "precision", "accuracy"):
        assert m[printed[name].metric] == pytest.approx(printed[name].value, abs=0.006), name
    assert abs(m["f1"] - printed["F1"].value) > 0.3


def test_a_discover_like_classifier_is_compared_under_f1_macro():
    """1,000 videos, 25 % abnormal, balanced accuracy 0.632 and macro precision 0.6535 as DISCOVER's zero-shot
    kNN on EchoNet-Dynamic (Table 5a): its macro F1 is 0.64, its class-1 F1 0.44."""
    tn, fp, fn, tp = 648, 102, 150, 100
    y = np.repeat([0, 0, 1, 1], [tn, fp, fn, tp])
    pred = np.repeat([0, 1, 0, 1], [tn, fp, fn, tp])
    m = classification_metrics(y, pred, pred.astype(float))
    assert m["balanced_accuracy"] == pytest.approx(0.632)
    assert m["precision_macro"] == pytest.approx((tn / (tn + fn) + tp / (tp + fp)) / 2) == pytest.approx(0.6535, 1e-3)
    assert m["f1_macro"] == pytest.approx((2 * tn / (2 * tn + fp + fn) + 2 * tp / (2 * tp + fp + fn)) / 2)
    assert (round(m["f1_macro"], 4), round(m["f1"], 4)) == (0.6398, 0.4425)
    assert echobench_metric("mishra-discover", "F1_pct") == "f1_macro"


def _write(path: Path, records: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def test_a_published_file_without_definitions_or_with_stale_ones_asks_to_be_regenerated(tmp_path):
    with (PUBLISHED / "stebler-temporal-mae.csv").open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    old = tmp_path / "old.csv"
    _write(old, [{k: v for k, v in r.items() if k != "definition"} for r in records])
    with pytest.raises(UserError, match="has no 'definition' column .*regenerate it: python scripts/normalise_publ"):
        read_rows(old)
    stale = tmp_path / "stale.csv"
    _write(
        stale,
        [r | ({"metric": "f1", "definition": "positive"} if r["metric_as_printed"] == "F1" else {}) for r in records],
    )
    with pytest.raises(
        UserError, match="line 2: stebler-temporal-mae's F1 is f1_negative \\(negative\\) but the file says f1"
    ):
        read_rows(stale)
    bad = tmp_path / "bad.csv"
    _write(bad, [r | {"definition": "class one"} for r in records])
    with pytest.raises(UserError, match="definition 'class one' is not one of"):
        read_rows(bad)
