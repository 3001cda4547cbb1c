"""Candidate advertisers of a (user, anchor) row and their features, from statistics of train rows.

Candidates, in order, de-duplicated and cut to ``n_candidates``: the user's past-conversion advertisers
(newest first), advertisers the user's texts name (:mod:`llm_predictor.eval.textmatch`), co-occurrence
transitions (past advertiser -> label on train rows), brand-group siblings and popularity; then whatever of
each input signal's top K (:data:`SIGNALS`: the popularity, history and co-occurrence baselines) is still
missing, so that every input ranking can be reproduced from the candidates and their rank features.

Statistics (popularity, label counts, transitions) come from :meth:`CandidateFeatures.fit_stats`. A row
must never be featurised with statistics that contain its own user: :meth:`CandidateFeatures.without_users`
gives the statistics of the other users (the reranker fits on train rows out of fold), and counts are
rescaled to the size of the full statistics so that a fold's features match an eval row's.
"""

from __future__ import annotations

import copy
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_predictor.eval.config import GBDTConfig
from llm_predictor.eval.rows import as_list
from llm_predictor.eval.textmatch import TEXT_FIELDS, NameIndex
from world.schema import category_levels

BASE_FEATURES: tuple[str, ...] = (
    "in_hist",
    "hist_rank",
    "hist_len",
    "cooc_score",
    "cooc_rank",
    "pop_count",
    "pop_rank",
    "label_count",
    "preset_rank",
    "sib_rank",
    "n_sib_hist",
    "cat_exact_rank",
    "cat_prefix_rank",
    "cat_top_rank",
    "cat_hist",
    "cat_top_hist",
    *(f"{f}_{s}" for f in TEXT_FIELDS for s in ("first", "n")),
)
LLM_FEATURES: tuple[str, ...] = ("llm_rank", "llm_top5", "llm_top20", "llm_len")
# The input signals as orders of rank features (missing = last, then candidate order). Over the candidates
# they give exactly the lists of llm_predictor.eval.baselines (popularity, history, co-occurrence) at K.
SIGNALS: dict[str, tuple[str, ...]] = {
    "popularity": ("pop_rank",),
    "history": ("hist_rank", "pop_rank"),
    "cooccurrence": ("cooc_rank", "hist_rank", "pop_rank"),
}
LLM_SIGNAL: tuple[str, ...] = ("llm_rank", "cooc_rank", "hist_rank", "pop_rank")  # the LLM list, then fill
STATS_COLUMNS: tuple[str, ...] = ("user_id", "active_advertiser_ids", "label_advertiser_id")


class CandidateFeatures:
    """Candidates and their feature matrix per row, from train statistics and the advertisers table."""

    def __init__(
        self,
        cfg: GBDTConfig | None = None,
        advertisers: pd.DataFrame | None = None,
        pools: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        self.cfg = cfg or GBDTConfig()
        self.use_llm = False
        self.feature_names: list[str] = list(BASE_FEATURES)
        self.stats_rows = pd.DataFrame({c: [] for c in STATS_COLUMNS})  # the rows the statistics count
        self.ref_rows = 0  # row count of the full statistics; counts of a subset are rescaled to it
        self.count_scale = 1.0
        self.pop: Counter[int] = Counter()
        self.label_count: Counter[int] = Counter()
        self.pop_rank: dict[int, int] = {}
        self.popular: list[int] = []
        self.trans: dict[int, Counter[int]] = {}
        self.trans_tot: dict[int, int] = {}
        # advertiser attributes
        self.category: dict[int, tuple[str, ...]] = {}
        self.group: dict[int, str] = {}
        self.group_members: dict[str, list[int]] = defaultdict(list)
        self.names = NameIndex()  # advertisers by name / alias / domain key, to find them in user texts
        if advertisers is not None:
            for r in advertisers.to_dict("records"):
                aid = int(r["advertiser_id"])
                self.category[aid] = category_key(r.get("category"))
                g = r.get("brand_group")
                if isinstance(g, str) and g:
                    self.group[aid] = g
                    self.group_members[g].append(aid)
                self.names.add(aid, r.get("name"), r.get("aliases"), r.get("domain"))
        # preset pool rank per anchor date
        self.pool_rank: dict[str, dict[int, int]] = {}
        for d, pool in (pools or {}).items():
            self.pool_rank[str(d)[:10]] = {
                int(a): int(k) for a, k in zip(pool["advertiser_id"], pool["rank"], strict=True)
            }

    # --- statistics -----------------------------------------------------------------------------------
    def fit_stats(self, train: pd.DataFrame, ref_rows: int | None = None) -> CandidateFeatures:
        """Popularity, label counts and past-advertiser -> label transitions from train rows, counted as
        :class:`llm_predictor.eval.baselines.Baselines` counts them (same order, so same ties).

        ``ref_rows``: the size of the full statistics these are a subset of (counts are rescaled to it)."""
        rows = train[[c for c in STATS_COLUMNS if c in train.columns]].reset_index(drop=True)
        lab = rows[rows["label_advertiser_id"].notna()]
        pop: Counter[int] = Counter()
        for ids in rows["active_advertiser_ids"]:
            pop.update(int(a) for a in as_list(ids))
        pop.update(int(y) for y in lab["label_advertiser_id"])
        labels: Counter[int] = Counter(int(y) for y in lab["label_advertiser_id"])
        trans: dict[int, Counter[int]] = defaultdict(Counter)
        for ids, y in zip(lab["active_advertiser_ids"], lab["label_advertiser_id"], strict=True):
            for a in as_list(ids):
                trans[int(a)][int(y)] += 1
        self.stats_rows = rows
        self.ref_rows = len(rows) if ref_rows is None else ref_rows
        self.count_scale = self.ref_rows / len(rows) if len(rows) else 1.0
        self.pop, self.label_count = pop, labels
        self.popular = [a for a, _ in pop.most_common()]
        self.pop_rank = {a: i for i, a in enumerate(self.popular)}
        self.trans = dict(trans)
        self.trans_tot = {a: sum(c.values()) for a, c in trans.items()}
        return self

    def without_users(self, users: Collection[int]) -> CandidateFeatures:
        """A copy whose statistics leave out the rows of ``users``, counts rescaled to the full size."""
        other = copy.copy(self)
        keep = ~self.stats_rows["user_id"].astype("int64").isin(list(users)).to_numpy()
        return other.fit_stats(self.stats_rows[keep], ref_rows=self.ref_rows)

    # --- candidates and features ----------------------------------------------------------------------
    def _text_matches(self, row: Mapping[str, Any]) -> dict[int, dict[str, list[int]]]:
        """advertiser -> field -> item indexes (newest first) whose text names the advertiser."""
        out: dict[int, dict[str, list[int]]] = {}
        if not self.names:
            return out
        for f in TEXT_FIELDS:
            for i, item in enumerate(as_list(row.get(f))[: self.cfg.text_items]):
                for aid in self.names.find(item):
                    out.setdefault(aid, {}).setdefault(f, []).append(i)
        return out

    def _cooc(self, hist: Sequence[int]) -> dict[int, float]:
        score: dict[int, float] = defaultdict(float)
        for rank, a in enumerate(hist):
            c = self.trans.get(a)
            if not c:
                continue
            tot = self.trans_tot[a]
            for b, n in c.items():
                score[b] += (n / tot) / (1.0 + rank)
        return score

    def row_candidates(
        self, row: Mapping[str, Any], llm: Sequence[int] | None = None
    ) -> tuple[list[int], np.ndarray]:
        """Candidate advertiser ids of one row and their feature matrix (candidates x features)."""
        cfg = self.cfg
        hist = list(dict.fromkeys(int(a) for a in as_list(row.get("active_advertiser_ids"))))
        hist_rank = {a: i for i, a in enumerate(hist)}
        texts = self._text_matches(row)
        cooc = self._cooc(hist)
        cooc_sorted = sorted(cooc, key=lambda b: -cooc[b])
        cooc_rank = {b: i for i, b in enumerate(cooc_sorted)}
        # siblings: brand-group members of history advertisers, by the sibling's recency
        sib_rank: dict[int, int] = {}
        sib_count: Counter[int] = Counter()
        for i, a in enumerate(hist):
            g = self.group.get(a)
            if g is None:
                continue
            for b in self.group_members[g]:
                if b != a:
                    sib_rank.setdefault(b, i)
                    sib_count[b] += 1

        def text_order(a: int) -> tuple[int, int]:
            m = texts[a]
            return min((TEXT_FIELDS.index(f), idx[0]) for f, idx in m.items())

        cands: list[int] = []
        seen: set[int] = set()

        def add(ids: Sequence[int], limit: int, cap: float = cfg.n_candidates) -> None:
            n = 0
            for a in ids:
                if len(cands) >= cap or n >= limit:
                    return
                if a not in seen:
                    seen.add(a)
                    cands.append(a)
                    n += 1

        add(hist, cfg.n_candidates)
        add(sorted(texts, key=text_order), cfg.n_text)
        add(cooc_sorted, cfg.n_cooc)
        add(sorted(sib_rank, key=lambda b: sib_rank[b]), cfg.n_siblings)
        add(self.popular, cfg.n_candidates)
        # each input signal's top K (SIGNALS), so that its ranking is one the reranker can give
        top = self.popular[: cfg.top_k + len(hist) + len(cooc_sorted[: cfg.top_k])]
        for signal in (top[: cfg.top_k], [*hist, *top], [*cooc_sorted[: cfg.top_k], *hist, *top]):
            add(list(dict.fromkeys(signal))[: cfg.top_k], cfg.top_k, math.inf)
        llm_rank: dict[int, int] = {}
        if llm is not None:
            for i, a in enumerate(dict.fromkeys(int(a) for a in llm)):
                llm_rank[a] = i + 1
            add(list(llm_rank)[: cfg.n_llm], cfg.n_llm, math.inf)

        # per-row context for category and brand features
        top_cats = [category_key(c) for c in as_list(row.get("top_categories"))]
        cat_full: dict[tuple[str, ...], int] = {}
        cat_prefix: dict[tuple[str, ...], int] = {}
        cat_top: dict[str, int] = {}
        for i, parts in enumerate(top_cats):
            if not parts:
                continue
            cat_full.setdefault(parts, i)
            cat_top.setdefault(parts[0], i)
            for j in range(1, len(parts) + 1):
                cat_prefix.setdefault(parts[:j], i)
        hist_cats = Counter(self.category.get(a, ()) for a in hist)
        hist_tops = Counter(c[0] for c in (self.category.get(a, ()) for a in hist) if c)
        pool = self.pool_rank.get(str(row.get("anchor_date"))[:10], {})
        hist_set = set(hist)
        nan = math.nan
        rows_out = []
        for a in cands:
            in_hist = a in hist_set
            parts = self.category.get(a, ())
            if parts:
                exact = cat_full.get(parts, nan)
                pref = [cat_prefix.get(parts, nan)] + [
                    cat_full.get(parts[:j], nan) for j in range(1, len(parts))
                ]
                pref = [p for p in pref if not math.isnan(p)]
                prefix = min(pref) if pref else nan
                top_rank = cat_top.get(parts[0], nan)
                c_hist = hist_cats.get(parts, 0) - int(in_hist)
                c_top = hist_tops.get(parts[0], 0) - int(in_hist)
            else:
                exact = prefix = top_rank = nan
                c_hist = c_top = 0
            feats = [
                float(in_hist),
                hist_rank.get(a, nan),
                len(hist),
                cooc.get(a, 0.0),
                cooc_rank.get(a, nan),
                math.log1p(self.pop.get(a, 0) * self.count_scale),
                self.pop_rank.get(a, nan),
                math.log1p(self.label_count.get(a, 0) * self.count_scale),
                pool.get(a, nan),
                sib_rank.get(a, nan),
                sib_count.get(a, 0),
                exact,
                prefix,
                top_rank,
                c_hist,
                c_top,
            ]
            m = texts.get(a, {})
            for f in TEXT_FIELDS:
                idx = m.get(f)
                feats += [idx[0], len(idx)] if idx else [nan, 0]
            if self.use_llm:
                r = llm_rank.get(a)
                feats += [
                    r if r is not None else nan,
                    float(r is not None and r <= 5),
                    float(r is not None and r <= 20),
                    len(llm_rank),
                ]
            rows_out.append(feats)
        return cands, np.asarray(rows_out, dtype=np.float32).reshape(len(cands), len(self.feature_names))

    def features(
        self, rows: pd.DataFrame, llm: Sequence[Sequence[int] | None] | None = None
    ) -> tuple[list[list[int]], np.ndarray, list[int]]:
        """Candidates per row, their stacked feature matrix and the candidate count per row."""
        cands_all, blocks, sizes = [], [], []
        for i, row in enumerate(rows.to_dict("records")):
            cands, x = self.row_candidates(row, llm[i] if llm is not None else None)
            if self.use_llm and llm is not None and llm[i] is None:
                x[:, -len(LLM_FEATURES) :] = np.nan  # no LLM prediction for this row
            cands_all.append(cands)
            blocks.append(x)
            sizes.append(len(cands))
        x = np.vstack(blocks) if blocks else np.zeros((0, len(self.feature_names)), np.float32)
        return cands_all, x, sizes

    def signal_order(self, x: np.ndarray, keys: Sequence[str]) -> np.ndarray:
        """Candidate positions of one row's block ``x`` in the order of rank features ``keys`` (smaller
        first, missing last, ties in candidate order)."""
        cols = [np.nan_to_num(x[:, self.feature_names.index(k)], nan=np.inf) for k in keys]
        return np.lexsort((np.arange(len(x)), *reversed(cols)))


def category_key(text: Any) -> tuple[str, ...]:
    """A category path as case-folded levels, the key category features compare:
    'Beauty > Skincare' and 'Beauty / Skincare' (compile's rendering) -> ('beauty', 'skincare')."""
    return tuple(level.casefold() for level in category_levels(text))


def user_fold(user_id: int, k: int, salt: int = 0) -> int:
    """A stable fold of a user (splitmix64 of the id plus ``salt``, mod k)."""
    z = (user_id + salt + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return int((z ^ (z >> 31)) % k)
