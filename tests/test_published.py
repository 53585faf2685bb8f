"""Published numbers: explicit unit normalisation and traceability of every committed row."""

from __future__ import annotations

from pathlib import Path

import pytest

from echobench.errors import UserError
from echobench.published import METRIC_RULES, normalise, normalise_protocol, read_rows

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
            assert (r.metric, r.factor, r.unit) == (rule.metric, rule.factor, rule.unit)
            assert r.value == pytest.approx(float(r.value_as_printed) * r.factor)
