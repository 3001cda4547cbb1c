"""Recall intervals and paired tests between methods on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from llm_predictor.eval.stats import mean_pairwise_jaccard, paired_diff_ci, paired_tests, recall_cis


def test_reranker_plus_llm_is_paired_with_the_reranker_on_the_rows_both_rank():
    labels = [1] * 10
    masks = {"V1": np.ones(10, dtype=bool)}
    plain = [[1]] * 3 + [[2]] * 5 + [[]] * 2  # the last two rows were not fitted: no ranking
    combo = [[1]] * 6 + [[2]] * 2 + [[]] * 2
    methods = {
        "gbdt [same rows]": {"kind": "combination"},
        "gbdt + llm": {"kind": "combination", "of": "gbdt [same rows]"},
    }
    ranked = {"gbdt [same rows]": plain, "gbdt + llm": combo}
    (row,) = paired_tests(ranked, methods, labels, masks, (1,))
    assert (row["a"], row["b"], row["n"], row["a_only"], row["b_only"]) == (
        "gbdt + llm",
        "gbdt [same rows]",
        8,
        3,
        0,
    )
    assert row["diff"] == pytest.approx(3 / 8)
    assert row["p"] == pytest.approx(0.25)  # two-sided binomial, 3 of 3 discordant pairs


def test_recall_intervals_and_paired_tests():
    labels = [1] * 10
    masks = {"V1": np.ones(10, dtype=bool)}
    a = [[1]] * 8 + [[2]] * 2  # hits 8 / 10
    b = [[2]] * 8 + [[1]] * 2  # hits 2 / 10: only the last two, where a misses
    ci = recall_cis(a, labels, masks, (1,))["V1"]["R@1"]
    assert ci == pytest.approx([0.4902, 0.9433], abs=1e-4)  # Wilson 95 % for 8 / 10
    methods = {
        "pop": {"kind": "baseline"},
        "llm: a": {"kind": "llm"},
        "llm: b": {"kind": "llm"},
        "llm: a [shuffle]": {"kind": "ablation", "of": "llm: a"},
    }
    ranked = {"pop": [[2]] * 10, "llm: a": a, "llm: b": b, "llm: a [shuffle]": a}
    rows = {(r["a"], r["b"]): r for r in paired_tests(ranked, methods, labels, masks, (1,))}
    ab = rows[("llm: a", "llm: b")]
    assert (ab["a_only"], ab["b_only"], ab["diff"], ab["n"]) == (8, 2, 0.6, 10)
    assert ab["p"] == pytest.approx(0.1094, abs=1e-4)  # two-sided binomial, 8 of 10 discordant pairs
    # the interval is scipy's one-sample t interval of the per-row differences (+1, -1, 0), clipped
    d = np.array([1] * 8 + [-1] * 2, dtype=float)
    want = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert ab["ci"] == pytest.approx([max(-1, want.low), min(1, want.high)], abs=1e-4)
    d = np.array([1] * 30 + [-1] * 12 + [0] * 458, dtype=float)
    want = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert paired_diff_ci(30, 12, 500) == pytest.approx([want.low, want.high], abs=1e-4)
    assert paired_diff_ci(0, 0, 500) == [0.0, 0.0] and paired_diff_ci(1, 0, 1) is None
    assert rows[("llm: a", "pop")]["p"] == pytest.approx(0.0078, abs=1e-4)  # 8 vs 0
    assert rows[("llm: a [shuffle]", "llm: a")] | {"p": None} == {
        "set": "V1",
        "k": 1,
        "a": "llm: a [shuffle]",
        "b": "llm: a",
        "n": 10,
        "a_only": 0,
        "b_only": 0,
        "diff": 0.0,
        "ci": [0.0, 0.0],
        "p": None,
    }
    assert rows[("llm: a [shuffle]", "llm: a")]["p"] == 1.0  # never disagree


def test_mean_pairwise_jaccard_all_pairs_and_sampled() -> None:
    same = [[1, 2, 3]] * 4
    assert mean_pairwise_jaccard(same) == 1.0
    assert mean_pairwise_jaccard([[1, 2], [3, 4], [5, 6]]) == 0.0
    # {1,2} vs {2,3}: 1/3; {1,2} vs {1,2}: 1; {2,3} vs {1,2}: 1/3 -> mean 5/9
    assert mean_pairwise_jaccard([[1, 2], [2, 3], [1, 2]]) == round(5 / 9, 4)
    assert mean_pairwise_jaccard([[1, 2, 3, 4]] * 2, k=2) == 1.0  # top-k only
    assert mean_pairwise_jaccard([[1], []]) is None  # empty lists are left out
    rng = np.random.default_rng(1)
    lists = [rng.choice(50, size=20, replace=False).tolist() for _ in range(300)]
    exact = mean_pairwise_jaccard(lists)
    sampled = mean_pairwise_jaccard(lists, max_pairs=5000)
    assert exact is not None and sampled is not None and abs(exact - sampled) < 0.01
