"""retrieval.blend: quotas, de-duplication, priority, diversity (pure logic)."""

from __future__ import annotations

import math

import pytest

from retrieval.blend import Candidate, advertiser_diversity, blend


def _c(items: list[int], src: str, adv: int = 1) -> list[Candidate]:
    return [Candidate(i, adv if adv else i, float(-k), src) for k, i in enumerate(items)]


def test_quotas_and_duplicates():
    cands = {
        "two_tower": _c([1, 2, 3, 4], "two_tower"),
        "popularity": _c([2, 5, 1, 6, 7], "popularity"),
        "llm": _c([5, 8, 9, 10], "llm"),
    }
    out = blend(cands, {"two_tower": 2, "popularity": 2, "llm": 3})
    assert [c.item_id for c in out] == [1, 2, 5, 6, 8, 9, 10]
    assert [c.source for c in out] == ["two_tower"] * 2 + ["popularity"] * 2 + ["llm"] * 3
    assert len({c.item_id for c in out}) == len(out)  # never an item twice
    for name, q in {"two_tower": 2, "popularity": 2, "llm": 3}.items():
        assert sum(c.source == name for c in out) <= q


def test_generator_with_fewer_distinct_items_than_quota_and_missing_quota():
    out = blend({"a": _c([1, 2], "a"), "b": _c([1, 2, 3], "b"), "c": _c([4], "c")}, {"a": 5, "b": 5})
    assert [(c.item_id, c.source) for c in out] == [(1, "a"), (2, "a"), (3, "b")]  # c has no quota
    assert blend({"a": _c([1], "a")}, {"a": 0}) == []
    with pytest.raises(ValueError, match="'a' is negative"):
        blend({"a": _c([1], "a")}, {"a": -1})


def test_control_is_a_prefix_of_treatment_when_llm_comes_last():
    base = {"two_tower": _c([1, 2, 3], "two_tower"), "popularity": _c([3, 4], "popularity")}
    q = {"two_tower": 2, "popularity": 2}
    control = blend(base, q)
    treatment = blend({**base, "llm": _c([2, 9], "llm")}, {**q, "llm": 2})
    assert treatment[: len(control)] == control and [c.item_id for c in treatment[len(control) :]] == [9]


def test_advertiser_diversity():
    assert advertiser_diversity([]) == {"distinct_advertisers": 0.0, "effective_advertisers": 0.0}
    one = [Candidate(i, 7, 0.0, "x") for i in range(4)]
    assert advertiser_diversity(one) == {"distinct_advertisers": 1.0, "effective_advertisers": 1.0}
    two = [Candidate(1, 1, 0, "x"), Candidate(2, 2, 0, "x")]
    assert math.isclose(advertiser_diversity(two)["effective_advertisers"], 2.0)
