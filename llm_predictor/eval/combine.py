"""The paper's "complementary" claim: the same reranker without and with LLM features ('gbdt' vs
'gbdt + llm'), fitted on the same rows, on train rows with LLM predictions or cross-fitted over eval users."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_predictor.eval.candidates import user_fold
from llm_predictor.eval.config import GBDTConfig
from llm_predictor.eval.reranker import GBDTReranker
from llm_predictor.eval.rows import align_predictions


def combine_with_llm(
    train: pd.DataFrame,
    eval_rows: pd.DataFrame,
    llm_eval: Sequence[Sequence[int] | None] | Mapping[Any, Sequence[int]],
    llm_train: Sequence[Sequence[int] | None] | Mapping[Any, Sequence[int]] | None = None,
    advertisers: pd.DataFrame | None = None,
    pools: Mapping[str, pd.DataFrame] | None = None,
    cfg: GBDTConfig | None = None,
    k: int = 20,
) -> dict[str, Any]:
    """'gbdt' vs 'gbdt + llm': the reranker without and with LLM features, fitted on the same rows.

    ``llm_eval`` / ``llm_train``: LLM advertiser ids aligned with the rows, or a dict keyed by user_id
    or (user_id, 'YYYY-MM-DD'). Mode 'train' (at least ``min_llm_train_rows`` labelled train rows have
    predictions): both models are fitted on those train rows and scored on ``eval_rows``. Mode
    'crossfit' otherwise: both are fitted on ``crossfit_folds`` - 1 folds of the eval rows (split by
    user) and scored on the held-out fold. Statistics (popularity, co-occurrence) always come from all
    train rows. Returns the ranked lists and candidate coverage of both, aligned with ``eval_rows``.
    """
    cfg = cfg or GBDTConfig()
    ev = align_predictions(llm_eval, eval_rows)
    base = GBDTReranker(cfg, advertisers, pools).fit_stats(train)
    mode = "crossfit"
    fit_rows = None
    tr: list[list[int] | None] = []
    if llm_train is not None:
        lab_train = train[train["label_advertiser_id"].notna()]
        tr = align_predictions(llm_train, lab_train)
        covered = np.array([p is not None for p in tr], dtype=bool)
        if covered.sum() >= cfg.min_llm_train_rows:
            mode = "train"
            fit_rows = lab_train[covered]
            tr = [p for p, c in zip(tr, covered, strict=True) if c]
    out: dict[str, Any] = {"mode": mode}
    if mode == "train":
        assert fit_rows is not None
        plain = base.clone().fit(fit_rows, in_stats=True)
        combo = base.clone().fit(fit_rows, in_stats=True, llm=tr)
        out["gbdt"] = dict(zip(("ranked", "in_candidates"), plain.predict(eval_rows, k=k), strict=True))
        out["gbdt + llm"] = dict(
            zip(("ranked", "in_candidates"), combo.predict(eval_rows, ev, k=k), strict=True)
        )
        out["n_fit_rows"] = len(fit_rows)
        out["importance"] = combo.feature_importance()
        return out
    # cross-fitting over eval users
    n = len(eval_rows)
    folds = np.array([user_fold(int(u), cfg.crossfit_folds) for u in eval_rows["user_id"]])
    res = {name: ([None] * n, [False] * n) for name in ("gbdt", "gbdt + llm")}
    fitted = 0
    for f in range(cfg.crossfit_folds):
        test = np.flatnonzero(folds == f)
        if len(test) == 0:
            continue
        train_idx = np.flatnonzero(folds != f)
        fit_rows = eval_rows.iloc[train_idx]
        fitted = max(fitted, int(fit_rows["label_advertiser_id"].notna().sum()))
        for name, use in (("gbdt", False), ("gbdt + llm", True)):
            m = base.clone()
            m.fit(fit_rows, in_stats=False, llm=[ev[i] for i in train_idx] if use else None)
            ranked, inc = m.predict(eval_rows.iloc[test], [ev[i] for i in test] if use else None, k=k)
            for j, i in enumerate(test):
                res[name][0][i] = ranked[j]
                res[name][1][i] = inc[j]
    for name, (ranked, inc) in res.items():
        out[name] = {"ranked": [r or [] for r in ranked], "in_candidates": inc}
    out["n_fit_rows"] = fitted
    return out
