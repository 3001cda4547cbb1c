"""The A/B report's cells: a relative change with its interval, or why there is none."""

from retrieval.ab_report import cell


def test_cell_formats_change_interval_and_p():
    c = {"rel_change": 0.012, "ci_low": -0.003, "ci_high": 0.028, "p_value": 0.11}
    assert cell(c) == "+1.2% [-0.3%, +2.8%], p=0.110"


def test_cell_says_undefined_when_the_reference_is_zero():
    c = {"rel_change": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": 0.102}
    assert cell(c) == "undefined (reference 0), p=0.102"
    assert cell(None) == "n/a"
