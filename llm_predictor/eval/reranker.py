"""A LightGBM reranker over candidate (user, advertiser) pairs: the strongest non-LLM baseline, and with
LLM features the 'gbdt + llm' side of the complementarity claim (:mod:`llm_predictor.eval.combine`).

Candidates come from the user's history, advertisers their texts name (:mod:`llm_predictor.eval.textmatch`),
co-occurrence transitions, brand-group siblings and popularity; features describe each candidate's place in
those sources, its category against the user's top categories, and its popularity.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_predictor.eval.config import GBDTConfig
from llm_predictor.eval.rows import as_list
from llm_predictor.eval.textmatch import TEXT_FIELDS, NameIndex
from world.schema import category_levels

log = logging.getLogger(__name__)

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


class GBDTReranker:
    """A LightGBM ranker over candidate (user, advertiser) pairs (a non-LLM baseline; + LLM features).

    Candidates per row, in order, de-duplicated and cut to ``n_candidates``: the user's past-conversion
    advertisers (newest first), advertisers whose name, alias or domain stem appears in the user's top
    brands / URLs / searches / conversion titles, co-occurrence transitions (past advertiser -> label on
    train users), brand-group siblings of past advertisers, then popularity. With LLM predictions their
    top ``n_llm`` are added on top (so 'gbdt + llm' candidates are a superset).

    Statistics (popularity, label counts, transitions) come from :meth:`fit_stats` on train rows; features
    of rows that were part of those statistics are computed leave-one-out (``loo=True``) so that a train
    row's own label does not leak into its co-occurrence and popularity features.
    """

    def __init__(
        self,
        cfg: GBDTConfig | None = None,
        advertisers: pd.DataFrame | None = None,
        pools: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        self.cfg = cfg or GBDTConfig()
        self.model: Any = None
        self.use_llm = False
        self.feature_names: list[str] = list(BASE_FEATURES)
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
    def fit_stats(self, train: pd.DataFrame) -> GBDTReranker:
        """Popularity, label counts and past-advertiser -> label transitions from train rows."""
        pop: Counter[int] = Counter()
        labels: Counter[int] = Counter()
        trans: dict[int, Counter[int]] = defaultdict(Counter)
        for ids, y in zip(train["active_advertiser_ids"], train["label_advertiser_id"], strict=True):
            hist = [int(a) for a in as_list(ids)]
            pop.update(hist)
            if y is not None and not pd.isna(y):
                pop[int(y)] += 1
                labels[int(y)] += 1
                for a in hist:
                    trans[a][int(y)] += 1
        self.pop, self.label_count = pop, labels
        self.popular = [a for a, _ in pop.most_common()]
        self.pop_rank = {a: i for i, a in enumerate(self.popular)}
        self.trans = dict(trans)
        self.trans_tot = {a: sum(c.values()) for a, c in trans.items()}
        return self

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

    def _cooc(self, hist: Sequence[int], label: int | None) -> dict[int, float]:
        score: dict[int, float] = defaultdict(float)
        for rank, a in enumerate(hist):
            c = self.trans.get(a)
            if not c:
                continue
            tot = self.trans_tot[a] - (1 if label is not None else 0)
            if tot <= 0:
                continue
            for b, n in c.items():
                n_eff = n - (1 if label is not None and b == label else 0)
                if n_eff > 0:
                    score[b] += (n_eff / tot) / (1.0 + rank)
        return score

    def row_candidates(
        self, row: Mapping[str, Any], loo: bool = False, llm: Sequence[int] | None = None
    ) -> tuple[list[int], np.ndarray]:
        """Candidate advertiser ids of one row and their feature matrix (candidates x features)."""
        cfg = self.cfg
        hist = list(dict.fromkeys(int(a) for a in as_list(row.get("active_advertiser_ids"))))
        y = row.get("label_advertiser_id")
        own_label = int(y) if loo and y is not None and not pd.isna(y) else None
        hist_rank = {a: i for i, a in enumerate(hist)}
        texts = self._text_matches(row)
        cooc = self._cooc(hist, own_label)
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

        def add(ids: Sequence[int], limit: int) -> None:
            n = 0
            for a in ids:
                if len(cands) >= cfg.n_candidates or n >= limit:
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
        llm_rank: dict[int, int] = {}
        if llm is not None:
            for i, a in enumerate(dict.fromkeys(int(a) for a in llm)):
                llm_rank[a] = i + 1
            for a in list(llm_rank)[: cfg.n_llm]:
                if a not in seen:
                    seen.add(a)
                    cands.append(a)

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
        label_loo = own_label
        hist_set = set(hist)
        nan = math.nan
        rows_out = []
        for a in cands:
            in_hist = a in hist_set
            pop_count = self.pop.get(a, 0)
            lab_count = self.label_count.get(a, 0)
            if loo:
                pop_count -= int(in_hist) + int(a == label_loo)
                lab_count -= int(a == label_loo)
            parts = self.category.get(a, ())
            if parts:
                exact = cat_full.get(parts, nan)
                pref = [cat_prefix.get(parts, nan)] + [
                    cat_full.get(parts[:j], nan) for j in range(1, len(parts))
                ]
                pref = [p for p in pref if not math.isnan(p)]
                prefix = min(pref) if pref else nan
                top = cat_top.get(parts[0], nan)
                c_hist = hist_cats.get(parts, 0) - int(in_hist)
                c_top = hist_tops.get(parts[0], 0) - int(in_hist)
            else:
                exact = prefix = top = nan
                c_hist = c_top = 0
            feats = [
                float(in_hist),
                hist_rank.get(a, nan),
                len(hist),
                cooc.get(a, 0.0),
                cooc_rank.get(a, nan),
                math.log1p(max(pop_count, 0)),
                self.pop_rank.get(a, nan),
                math.log1p(max(lab_count, 0)),
                pool.get(a, nan),
                sib_rank.get(a, nan),
                sib_count.get(a, 0),
                exact,
                prefix,
                top,
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

    def _matrix(
        self, rows: pd.DataFrame, loo: bool, llm: Sequence[Sequence[int] | None] | None
    ) -> tuple[list[list[int]], np.ndarray, list[int]]:
        cands_all, blocks, sizes = [], [], []
        for i, row in enumerate(rows.to_dict("records")):
            cands, x = self.row_candidates(row, loo, llm[i] if llm is not None else None)
            if self.use_llm and llm is not None and llm[i] is None:
                x[:, -len(LLM_FEATURES) :] = np.nan  # no LLM prediction for this row
            cands_all.append(cands)
            blocks.append(x)
            sizes.append(len(cands))
        x = np.vstack(blocks) if blocks else np.zeros((0, len(self.feature_names)), np.float32)
        return cands_all, x, sizes

    def clone(self) -> GBDTReranker:
        """An unfitted copy sharing the (read-only) statistics and advertiser attributes."""
        other = copy.copy(self)
        other.model = None
        other.use_llm = False
        other.feature_names = list(BASE_FEATURES)
        return other

    # --- model ------------------------------------------------------------------------------------------
    def fit(
        self, rows: pd.DataFrame, loo: bool = True, llm: Sequence[Sequence[int] | None] | None = None
    ) -> GBDTReranker:
        """Fit the ranker on labelled ``rows`` (llm: predictions aligned with rows -> LLM features)."""
        import lightgbm as lgb

        cfg = self.cfg
        self.use_llm = llm is not None
        self.feature_names = list(BASE_FEATURES) + (list(LLM_FEATURES) if self.use_llm else [])
        keep = rows["label_advertiser_id"].notna().to_numpy()
        rows = rows[keep]
        if llm is not None:
            llm = [p for p, k in zip(llm, keep, strict=True) if k]
        if cfg.max_train_rows is not None and len(rows) > cfg.max_train_rows:
            take = np.random.default_rng(cfg.seed).choice(len(rows), cfg.max_train_rows, replace=False)
            take.sort()
            rows = rows.iloc[take]
            if llm is not None:
                llm = [llm[i] for i in take]
        cands, x, sizes = self._matrix(rows, loo, llm)
        y = np.zeros(len(x), dtype=np.int32)
        keep_rows = np.zeros(len(x), dtype=bool)
        groups = []
        pos = 0
        for c, n, lab in zip(cands, sizes, rows["label_advertiser_id"], strict=True):
            if int(lab) in c:
                y[pos + c.index(int(lab))] = 1
                keep_rows[pos : pos + n] = True
                groups.append(n)
            pos += n
        if not groups:
            log.warning(
                "reranker: no training row has its label among the candidates; ranking by candidate order"
            )
            self.model = None
            return self
        if cfg.objective not in ("lambdarank", "binary"):
            raise ValueError(f"objective must be 'lambdarank' or 'binary', got {cfg.objective!r}")
        params: dict[str, Any] = {
            "objective": cfg.objective,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples,
            "num_threads": cfg.n_jobs,
            "seed": cfg.seed,
            "verbose": -1,
            "deterministic": True,
            "force_col_wise": True,
        }
        if cfg.objective == "lambdarank":
            params["lambdarank_truncation_level"] = 20
        group = groups if cfg.objective == "lambdarank" else None
        data = lgb.Dataset(x[keep_rows], label=y[keep_rows], group=group, feature_name=self.feature_names)
        self.model = lgb.train(params, data, num_boost_round=cfg.n_estimators)
        return self

    def predict(
        self,
        rows: pd.DataFrame,
        llm: Sequence[Sequence[int] | None] | None = None,
        loo: bool = False,
        k: int = 20,
    ) -> tuple[list[list[int]], list[bool]]:
        """Top-k advertiser ids per row and whether the row's label was among its candidates."""
        if self.use_llm and llm is None:
            raise ValueError("this reranker was fitted with LLM features; pass llm predictions")
        cands, x, sizes = self._matrix(rows, loo, llm if self.use_llm else None)
        # unfitted (no training row had its label among the candidates): candidate order
        scores = np.zeros(len(x)) if self.model is None or len(x) == 0 else self.model.predict(x)
        ranked, in_cands = [], []
        pos = 0
        for c, n, lab in zip(cands, sizes, rows["label_advertiser_id"], strict=True):
            s = scores[pos : pos + n]
            order = np.argsort(-s, kind="stable")
            ranked.append([c[i] for i in order[:k]])
            in_cands.append(lab is not None and not pd.isna(lab) and int(lab) in c)
            pos += n
        return ranked, in_cands

    def feature_importance(self) -> dict[str, float]:
        if self.model is None:
            return {}
        gain = self.model.feature_importance(importance_type="gain")
        total = float(gain.sum()) or 1.0
        return {n: round(float(g) / total, 4) for n, g in zip(self.feature_names, gain, strict=True)}


def category_key(text: Any) -> tuple[str, ...]:
    """A category path as case-folded levels, the key category features compare:
    'Beauty > Skincare' and 'Beauty / Skincare' (compile's rendering) -> ('beauty', 'skincare')."""
    return tuple(level.casefold() for level in category_levels(text))
