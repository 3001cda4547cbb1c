"""Recall@K per example set, its confidence intervals and paired tests between methods on the same rows.

Intervals and tests are scipy's: Wilson score intervals (``scipy.stats.binomtest(...).proportion_ci``) and
exact McNemar tests (the two-sided binomial test of the discordant rows, ``scipy.stats.binomtest``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_predictor.eval.baselines import hits_at_k, recall_at_k


def recalls(
    ranked: Sequence[Sequence[int]], rows: pd.DataFrame, masks: Mapping[str, np.ndarray], ks: Sequence[int]
) -> dict[str, dict[str, float | None]]:
    """Recall@K of a ranking per example set: {set: {'R@k': recall or None}}."""
    labels = rows["label_advertiser_id"].tolist()
    out: dict[str, dict[str, float | None]] = {}
    for s, m in masks.items():
        r = [ranked[i] for i in np.flatnonzero(m)]
        y = [labels[i] for i in np.flatnonzero(m)]
        out[s] = {f"R@{k}": _num(recall_at_k(r, y, k)) for k in ks}
    return out


def recall_cis(
    ranked: Sequence[Sequence[int]],
    labels: Sequence[Any],
    masks: Mapping[str, np.ndarray],
    ks: Sequence[int],
    level: float = 0.95,
) -> dict[str, dict[str, list[float] | None]]:
    """Wilson score interval of each Recall@K (``scipy.stats.binomtest``): at 48 rows R@20 = 0.35 is
    [0.23, 0.49], so two methods closer than that are not told apart by their intervals alone."""
    from scipy.stats import binomtest

    out: dict[str, dict[str, list[float] | None]] = {}
    for s, m in masks.items():
        out[s] = {}
        for k in ks:
            hits = [
                h for h, keep in zip(hits_at_k(ranked, labels, k), m, strict=True) if keep and h is not None
            ]
            if not hits:
                out[s][f"R@{k}"] = None
                continue
            ci = binomtest(int(sum(hits)), len(hits)).proportion_ci(level, method="wilson")
            out[s][f"R@{k}"] = [round(float(ci.low), 4), round(float(ci.high), 4)]
    return out


PAIRED_KINDS = ("llm", "predictions")  # methods compared with each other and with the best non-LLM method
NON_LLM_KINDS = ("baseline", "gbdt")


def paired_tests(
    ranked_by: Mapping[str, Sequence[Sequence[int]]],
    methods: Mapping[str, Mapping[str, Any]],
    labels: Sequence[Any],
    masks: Mapping[str, np.ndarray],
    ks: Sequence[int],
) -> list[dict[str, Any]]:
    """Exact McNemar tests on the same rows: every pair of LLM methods (in evaluation order), every LLM
    against the best non-LLM method (baselines, gbdt) of that set and K (picked on these rows: a choice that
    favours the baseline), every ablation against its full-prompt run, and every reranker + LLM combination
    against the reranker alone on the rows both rank. ``a_only`` / ``b_only`` count the rows only one of the
    two hits; ``diff`` = R@K(a) - R@K(b) with its paired interval ``ci`` (:func:`paired_diff_ci`); ``p`` =
    two-sided binomial test of a_only against b_only (1.0 when they never disagree)."""
    from scipy.stats import binomtest

    llms = [n for n, m in methods.items() if m.get("kind") in PAIRED_KINDS and n in ranked_by]
    others = [n for n, m in methods.items() if m.get("kind") in NON_LLM_KINDS and n in ranked_by]
    ablations = [
        (n, m["of"]) for n, m in methods.items() if m.get("kind") == "ablation" and m.get("of") in ranked_by
    ]
    combos = [  # reranker + LLM scores against the reranker alone, on the rows both rank
        (n, m["of"])
        for n, m in methods.items()
        if m.get("kind") == "combination" and m.get("of") in ranked_by and n in ranked_by
    ]
    out: list[dict[str, Any]] = []
    for s, mask in masks.items():
        if not mask.any():
            continue
        ranks = {  # rows a method ranks at all (a combination skips rows it could not fit)
            n: np.array([len(r) > 0 for r, keep in zip(ranked_by[n], mask, strict=True) if keep])
            for c in combos
            for n in c
        }
        for k in ks:
            hits = {
                n: np.array(
                    [
                        bool(h)
                        for h, keep in zip(hits_at_k(ranked_by[n], labels, k), mask, strict=True)
                        if keep
                    ]
                )
                for n in {*llms, *others, *(a for a, _ in ablations), *(x for pair in combos for x in pair)}
            }
            pairs = [(a, b) for i, a in enumerate(llms) for b in llms[i + 1 :]]
            if others:
                best = max(others, key=lambda n: (hits[n].mean(), -others.index(n)))
                pairs += [(a, best) for a in llms]
            pairs += ablations + combos
            for a, b in pairs:
                both = ranks[a] & ranks[b] if (a, b) in combos else np.ones(int(mask.sum()), dtype=bool)
                ha, hb = hits[a][both], hits[b][both]
                a_only = int((ha & ~hb).sum())
                b_only = int((~ha & hb).sum())
                p = binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
                out.append(
                    {
                        "set": s,
                        "k": k,
                        "a": a,
                        "b": b,
                        "n": int(both.sum()),
                        "a_only": a_only,
                        "b_only": b_only,
                        "diff": round(float(ha.mean() - hb.mean()), 4) if both.any() else 0.0,
                        "ci": paired_diff_ci(a_only, b_only, int(both.sum())),
                        "p": round(float(p), 4),
                    }
                )
    return out


def paired_diff_ci(a_only: int, b_only: int, n: int, level: float = 0.95) -> list[float] | None:
    """Interval of R@K(a) - R@K(b) on ``n`` paired rows, from the discordant counts: the t interval of the
    mean per-row difference (+1 on the ``a_only`` rows, -1 on the ``b_only`` rows, 0 elsewhere; what
    ``scipy.stats.ttest_1samp(d).confidence_interval(level)`` gives on those rows), clipped to [-1, 1].
    [0, 0] when the two never disagree; None with fewer than two rows."""
    from scipy.stats import t

    if n < 2:
        return None
    if a_only + b_only == 0:
        return [0.0, 0.0]
    mean = (a_only - b_only) / n
    var = (a_only + b_only - n * mean**2) / (n - 1)
    half = float(t.ppf((1 + level) / 2, n - 1)) * math.sqrt(max(var, 0.0) / n)
    return [round(max(-1.0, mean - half), 4), round(min(1.0, mean + half), 4)]


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def share(flags: Sequence[bool], mask: np.ndarray) -> float | None:
    """Share of True ``flags`` over the rows of ``mask`` (None without rows)."""
    sel = [flags[i] for i in np.flatnonzero(mask)]
    return round(sum(sel) / len(sel), 4) if sel else None


def mean_pairwise_jaccard(
    lists: Sequence[Sequence[Any]], k: int = 20, max_pairs: int = 100_000, seed: int = 0
) -> float | None:
    """Mean Jaccard similarity of the top-``k`` sets of two different users, over all pairs (a seeded sample
    of ``max_pairs`` pairs when there are more): how user-specific the lists are (1 = everyone gets the
    same list). Empty lists are left out; None with fewer than two lists."""
    sets = [frozenset(list(x)[:k]) for x in lists if len(x)]
    n = len(sets)
    if n < 2:
        return None
    if n * (n - 1) // 2 <= max_pairs:
        pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    else:
        rng = np.random.default_rng(seed)
        a = rng.integers(0, n, size=max_pairs)
        b = (a + rng.integers(1, n, size=max_pairs)) % n  # never a == b
        pairs = list(zip(a.tolist(), b.tolist(), strict=True))
    total = sum(len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for a, b in pairs)
    return round(total / len(pairs), 4)
