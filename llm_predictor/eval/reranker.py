"""A LightGBM reranker over candidate (user, advertiser) pairs: the strongest non-LLM baseline, and with
LLM features the 'gbdt + llm' side of the complementarity claim (:mod:`llm_predictor.eval.combine`).

Candidates and features come from :mod:`llm_predictor.eval.candidates`. Two rules keep the learned ranking
honest:

* **Out-of-fold statistics.** A train row is featurised with statistics (popularity, label counts,
  transitions) of the *other* users' folds, exactly as an eval row is featurised with statistics that do not
  contain it. (The former leave-one-out subtraction leaked the label: a label's count was one lower on
  exactly the positive pairs, so the model learnt "count one below its full value = label" and at eval,
  where no count is lowered, ranked the labels down: R@20 0.272 on amazon-scientific against co-occurrence
  0.312, and on small real slices below popularity.)
* **Validation choice.** Fold 0 of the fitting users is held out; if an input signal (popularity, history,
  co-occurrence, and with LLM features the LLM's list) has a higher R@K there than the learned ranker, the
  reranker ranks by that signal (every signal's top K is among the candidates, so it reproduces it exactly).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_predictor.eval.candidates import (
    BASE_FEATURES,
    LLM_FEATURES,
    LLM_SIGNAL,
    SIGNALS,
    CandidateFeatures,
    user_fold,
)

log = logging.getLogger(__name__)

LEARNED = "gbdt"  # the name of the learned ranking among the choices
STATS_SALT = 7_919  # user folds of the statistics and the validation split, independent of cross-fitting's


class GBDTReranker(CandidateFeatures):
    """A LightGBM ranker over candidate (user, advertiser) pairs (a non-LLM baseline; + LLM features).

    Call :meth:`fit_stats` on train rows, then :meth:`fit` on labelled rows (``in_stats``: the rows are
    part of those statistics, so they are featurised out of fold), then :meth:`predict`. After fitting,
    ``choice`` is the ranking used (``'gbdt'`` or an input signal) and ``validation`` its evidence.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Any = None
        self.choice = LEARNED  # 'gbdt' (the learned ranker) or the input signal ranked by instead
        self.validation: dict[str, Any] = {}  # held-out rows and R@K of every choice on them

    def clone(self) -> GBDTReranker:
        """An unfitted copy sharing the (read-only) statistics and advertiser attributes."""
        other = copy.copy(self)
        other.model = None
        other.use_llm = False
        other.feature_names = list(BASE_FEATURES)
        other.choice, other.validation = LEARNED, {}
        return other

    def signals(self) -> dict[str, tuple[str, ...]]:
        """The input signals a fitted reranker can fall back to, as rank-feature orders."""
        return {**SIGNALS, **({"llm": LLM_SIGNAL} if self.use_llm else {})}

    # --- fitting ----------------------------------------------------------------------------------------
    def _folds(self, rows: pd.DataFrame, k: int) -> np.ndarray:
        return np.array([user_fold(int(u), k, STATS_SALT) for u in rows["user_id"]], dtype=np.int64)

    def out_of_fold_features(
        self, rows: pd.DataFrame, llm: Sequence[Sequence[int] | None] | None = None
    ) -> tuple[list[list[int]], np.ndarray, list[int]]:
        """:meth:`features` of rows that are part of the statistics, each fold of users featurised with the
        statistics of the other folds (so no row is ever featurised with its own label or history)."""
        folds = self._folds(rows, max(self.cfg.stats_folds, 2))
        cands: list[list[int]] = [[] for _ in range(len(rows))]
        blocks: list[np.ndarray] = [np.zeros((0, len(self.feature_names)), np.float32)] * len(rows)
        for f in np.unique(folds):
            idx = np.flatnonzero(folds == f)
            part = rows.iloc[idx]
            stats = self.without_users(set(part["user_id"].astype("int64")))
            c, x, sizes = stats.features(part, [llm[i] for i in idx] if llm is not None else None)
            starts = np.concatenate([[0], np.cumsum(sizes)])
            for j, i in enumerate(idx):
                cands[i], blocks[i] = c[j], x[starts[j] : starts[j + 1]]
        sizes = [len(c) for c in cands]
        x = np.vstack(blocks) if blocks else np.zeros((0, len(self.feature_names)), np.float32)
        return cands, x, sizes

    def _train(self, rows: pd.DataFrame, in_stats: bool, llm: Sequence[Sequence[int] | None] | None) -> Any:
        """A LightGBM model on ``rows`` featurised with this object's statistics (None: no usable row)."""
        import lightgbm as lgb

        cfg = self.cfg
        llm_in = llm if self.use_llm else None
        cands, x, sizes = self.out_of_fold_features(rows, llm_in) if in_stats else self.features(rows, llm_in)
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
            return None
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
            params["lambdarank_truncation_level"] = cfg.top_k
        group = groups if cfg.objective == "lambdarank" else None
        data = lgb.Dataset(x[keep_rows], label=y[keep_rows], group=group, feature_name=self.feature_names)
        return lgb.train(params, data, num_boost_round=cfg.n_estimators)

    def fit(
        self, rows: pd.DataFrame, in_stats: bool = True, llm: Sequence[Sequence[int] | None] | None = None
    ) -> GBDTReranker:
        """Fit on labelled ``rows`` (``in_stats``: they are rows of :meth:`fit_stats`; ``llm``: predictions
        aligned with rows -> LLM features), choosing on held-out users between the learned ranker and its
        input signals (:class:`llm_predictor.eval.config.GBDTConfig` ``select_on_validation``)."""
        cfg = self.cfg
        if cfg.objective not in ("lambdarank", "binary"):
            raise ValueError(f"objective must be 'lambdarank' or 'binary', got {cfg.objective!r}")
        self.use_llm = llm is not None
        self.feature_names = list(BASE_FEATURES) + (list(LLM_FEATURES) if self.use_llm else [])
        self.choice, self.validation = LEARNED, {}
        keep = rows["label_advertiser_id"].notna().to_numpy()
        rows = rows[keep].reset_index(drop=True)
        if llm is not None:
            llm = [p for p, k in zip(llm, keep, strict=True) if k]
        if cfg.max_train_rows is not None and len(rows) > cfg.max_train_rows:
            take = np.random.default_rng(cfg.seed).choice(len(rows), cfg.max_train_rows, replace=False)
            take.sort()
            rows = rows.iloc[take].reset_index(drop=True)
            if llm is not None:
                llm = [llm[i] for i in take]
        held = self._folds(rows, max(cfg.stats_folds, 2)) == 0
        if cfg.select_on_validation and held.sum() >= cfg.min_validation_rows and (~held).any():
            self._select(rows, held, in_stats, llm)
            if self.choice != LEARNED:
                return self  # ranked by an input signal; the validation model stays for its importances
        self.model = self._train(rows, in_stats, llm)
        if self.model is None:
            log.warning("reranker: no training row has its label among the candidates; candidate order")
        return self

    def _select(
        self, rows: pd.DataFrame, held: np.ndarray, in_stats: bool, llm: Sequence[Sequence[int] | None] | None
    ) -> None:
        """Fit on the other users, score the ``held`` ones like eval rows, keep the best ranking there."""
        fit_idx, val_idx = np.flatnonzero(~held), np.flatnonzero(held)
        val = rows.iloc[val_idx]
        inner = self.without_users(set(val["user_id"].astype("int64"))) if in_stats else copy.copy(self)
        pick = (lambda idx: [llm[i] for i in idx]) if llm is not None else (lambda idx: None)
        model = inner._train(rows.iloc[fit_idx], in_stats, pick(fit_idx))
        cands, x, sizes = inner.features(val, pick(val_idx) if self.use_llm else None)
        scores = model.predict(x) if model is not None and len(x) else np.zeros(len(x))
        labels = [int(y) for y in val["label_advertiser_id"]]
        k = self.cfg.top_k
        hits = dict.fromkeys([LEARNED, *self.signals()], 0)
        for c, lo, hi, y in zip(cands, np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes), labels, strict=True):
            block = x[lo:hi]
            orders = {LEARNED: np.argsort(-scores[lo:hi], kind="stable")}
            orders.update({name: self.signal_order(block, keys) for name, keys in self.signals().items()})
            for name, order in orders.items():
                hits[name] += int(y in {c[i] for i in order[:k]})
        recall = {name: round(h / len(labels), 4) for name, h in hits.items()}
        best = max(recall, key=lambda name: (recall[name], name == LEARNED))  # ties keep the learned ranker
        self.model, self.choice = model, best
        self.validation = {"rows": len(labels), "k": k, "recall": recall, "choice": best}
        log.info("reranker validation R@%d on %d held-out rows: %s -> %s", k, len(labels), recall, best)

    # --- ranking ----------------------------------------------------------------------------------------
    def predict(
        self, rows: pd.DataFrame, llm: Sequence[Sequence[int] | None] | None = None, k: int = 20
    ) -> tuple[list[list[int]], list[bool]]:
        """Top-k advertiser ids per row and whether the row's label was among its candidates."""
        if self.use_llm and llm is None:
            raise ValueError("this reranker was fitted with LLM features; pass llm predictions")
        cands, x, sizes = self.features(rows, llm if self.use_llm else None)
        learned = self.choice == LEARNED
        # unfitted (no training row had its label among the candidates): candidate order
        fitted = learned and self.model is not None and len(x) > 0
        scores = self.model.predict(x) if fitted else np.zeros(len(x))
        ranked, in_cands = [], []
        pos = 0
        for c, n, lab in zip(cands, sizes, rows["label_advertiser_id"], strict=True):
            if learned:
                order = np.argsort(-scores[pos : pos + n], kind="stable")
            else:
                order = self.signal_order(x[pos : pos + n], self.signals()[self.choice])
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
