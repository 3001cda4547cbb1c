"""Offline evaluation of advertiser prediction (design.md "Metrics"; paper 4.2, Tables 2-3): the orchestrator.

:func:`evaluate` scores, on the *same* labelled eval rows (:mod:`llm_predictor.eval.rows`) and per set
(V1 = all rows, V0 = ``in_v0``), what :class:`llm_predictor.eval.config.EvalConfig` names:

* every LLM given (``EvalConfig.models``), and its prompt ablations (Table 4): prompt -> generate -> parse ->
  resolve -> de-duplicated advertiser IDs, with format and hallucination rates (:mod:`llm_predictor.eval.runs`);
* precomputed predictions (a dict or a parquet file: user_id [, anchor_date], advertiser_ids);
* the non-LLM baselines of :mod:`llm_predictor.eval.baselines` (popularity, history, co-occurrence, and the
  consumers' control 'heuristic': history + brands + co-occurrence + popularity) and the
  LightGBM reranker of :mod:`llm_predictor.eval.reranker`, with its candidate-set ceiling;
* the paper's "complementary" claim (:mod:`llm_predictor.eval.combine`): the same reranker with and without
  LLM features (and LLM candidates) on the same rows: 'gbdt' vs 'gbdt + llm'.

Recall@K counts a labelled row as a hit when its label is among the first K resolved, de-duplicated
predictions (:func:`llm_predictor.eval.baselines.recall_at_k`); intervals and paired tests come from
:mod:`llm_predictor.eval.stats`. Results go to ``<out>/eval.json`` and ``<out>/eval.md``
(:mod:`llm_predictor.eval.markdown`: a table, with the command line and the configuration).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from llm_predictor.data.compiled import load_examples, read_preset_pool
from llm_predictor.eval.baselines import Baselines
from llm_predictor.eval.combine import combine_with_llm
from llm_predictor.eval.config import EvalConfig, ablate_rows
from llm_predictor.eval.markdown import eval_markdown
from llm_predictor.eval.reranker import GBDTReranker
from llm_predictor.eval.rows import (
    load_advertisers,
    load_predictions,
    lookup_predictions,
    row_key,
    sample_rows,
    set_masks,
)
from llm_predictor.eval.runs import format_stats, pool_ceiling, run_llm, write_predictions
from llm_predictor.eval.stats import paired_tests, recall_cis, recalls, share

log = logging.getLogger(__name__)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path | date):
        return str(obj)
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def evaluate(
    cfg: EvalConfig,
    predictions: Mapping[str, Mapping[Any, Sequence[int]]] | None = None,
    models: Mapping[str, tuple[Any, Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate LLMs, precomputed predictions and baselines on the same eval rows; write the report.

    ``predictions``: method name -> {user_id or (user_id, 'YYYY-MM-DD'): advertiser ids} (may cover
    train rows too, which 'gbdt + llm' then trains on). ``models``: already loaded (model, tokenizer)
    pairs by method name, evaluated besides ``cfg.models`` (paths). Returns the dict written to
    ``<out>/eval.json``.
    """
    t_start = time.perf_counter()
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = load_examples(Path(cfg.examples))
    if cfg.anchor_dates:
        wanted = {d.isoformat() if isinstance(d, date) else str(d) for d in cfg.anchor_dates}
        df = df[df["anchor_date"].astype(str).isin(wanted)]
    dates = sorted({str(d)[:10] for d in df["anchor_date"]})
    pool_frames = {d: read_preset_pool(Path(cfg.examples), date.fromisoformat(d)) for d in dates}
    pool_names = {d: p["name"].astype(str).tolist() for d, p in pool_frames.items()}
    train = df[df["split"] == "train"].reset_index(drop=True)
    ev_all = df[(df["split"] == cfg.split) & df["label_advertiser_id"].notna()]
    rows = sample_rows(ev_all, cfg.max_examples, cfg.seed)
    masks = set_masks(rows, cfg.sets)
    advertisers = load_advertisers(cfg.data, df, pool_frames)
    from llm_predictor.infer.grammar import interest_vocabulary

    interests = interest_vocabulary(advertisers["category"]) if "category" in advertisers.columns else []
    ks = tuple(cfg.ks)
    kmax = max(ks)
    log.info(
        "evaluating on %d labelled %s rows (%s); %d train rows",
        len(rows),
        cfg.split,
        ", ".join(f"{s}={int(m.sum())}" for s, m in masks.items()),
        len(train),
    )

    methods: dict[str, dict[str, Any]] = {}
    combos: list[dict[str, Any]] = []
    ranked_by: dict[str, Sequence[Sequence[int]]] = {}  # every method's ranking, for CIs and paired tests

    def scored(name: str, ranked: Sequence[Sequence[int]]) -> dict[str, dict[str, float | None]]:
        ranked_by[name] = ranked
        return recalls(ranked, rows, masks, ks)

    # --- non-LLM baselines -------------------------------------------------------------------------
    if cfg.baselines:
        # brand names map through the advertisers table or the train rows, never the eval labels
        b = Baselines(k=kmax).fit(train, load_advertisers(cfg.data, train, pool_frames))
        for name in ("popularity", "history", "cooccurrence", "heuristic"):
            ranked = getattr(b, name)(rows)
            methods[name] = {"kind": "baseline", "recall": scored(name, ranked)}
    if cfg.gbdt is not None and len(train):
        t0 = time.perf_counter()
        rr = GBDTReranker(cfg.gbdt, advertisers, pool_frames).fit_stats(train)
        rr.fit(train, in_stats=True)  # train rows featurised out of fold
        ranked, inc = rr.predict(rows, k=kmax)
        methods["gbdt"] = {
            "kind": "gbdt",
            "recall": scored("gbdt", ranked),
            "ceiling": {s: share(inc, m) for s, m in masks.items()},
            "choice": rr.choice,  # 'gbdt' or the input signal it ranks by (validation on train users)
            "validation": rr.validation,
            "importance": rr.feature_importance(),
            "seconds": round(time.perf_counter() - t0, 2),
        }

    # --- LLMs -------------------------------------------------------------------------------------------
    from llm_predictor.data.resolver import AdvertiserResolver

    resolver = AdvertiserResolver.from_table(advertisers)
    in_pools = pool_ceiling(
        rows, {d: p["advertiser_id"].astype(int).tolist() for d, p in pool_frames.items()}
    )
    llm_preds: dict[str, tuple[list[list[int]], dict[Any, list[int]] | None]] = {}
    loaded: dict[str, tuple[Any, Any] | str] = dict(models or {})
    for path in cfg.models:
        name = Path(path).name or str(path)
        while name in loaded:
            name += "'"
        loaded[name] = str(path)
    for name, spec in loaded.items():
        if isinstance(spec, str):
            from llm_predictor.infer.decoding import load_model
            from llm_predictor.shipped import resolve_model

            path = resolve_model(spec)
            if cfg.engine_kind == "vllm":  # vLLM loads the model itself: pass its folder, keep the tokenizer
                from transformers import AutoTokenizer

                model, tok = str(path), AutoTokenizer.from_pretrained(str(path))
            else:
                model, tok = load_model(path, cfg.device)
        else:
            model, tok = spec
        run = run_llm(model, tok, rows, pool_names, resolver, cfg, interests)
        method = f"llm: {name}"
        methods[method] = {
            "kind": "llm",
            "recall": scored(method, run.ids),
            "format": {s: format_stats(run, m) for s, m in masks.items()},
            "ceiling": {s: share(in_pools, m) for s, m in masks.items()},  # labels the prompt's pools offer
            "seconds_per_row": round(run.seconds / max(len(rows), 1), 4),
        }
        write_predictions(out_dir / f"predictions_{_slug(method)}.parquet", rows, run)
        for spec in cfg.ablations:  # Table 4: the same model and rows, one prompt alteration each
            ab_run = run_llm(
                model, tok, ablate_rows(rows, spec, cfg.seed), pool_names, resolver, cfg, interests
            )
            methods[f"{method} [{spec}]"] = {
                "kind": "ablation",
                "ablation": spec,
                "of": method,
                "recall": scored(f"{method} [{spec}]", ab_run.ids),
                "format": {s: format_stats(ab_run, m) for s, m in masks.items()},
            }
        train_preds = None
        if cfg.llm_train_examples > 0 and cfg.combine and cfg.gbdt is not None:
            lab_train = sample_rows(
                train[train["label_advertiser_id"].notna()], cfg.llm_train_examples, cfg.seed
            )
            tr_run = run_llm(model, tok, lab_train, pool_names, resolver, cfg, interests)
            train_preds = {
                row_key(r): ids for r, ids in zip(lab_train.to_dict("records"), tr_run.ids, strict=True)
            }
        llm_preds[method] = (run.ids, train_preds)
        del model
    for name, preds in (predictions or {}).items():
        llm_preds[name] = ([lookup_predictions(preds, r) or [] for r in rows.to_dict("records")], dict(preds))
    for name, path in cfg.predictions.items():
        preds = load_predictions(Path(path))
        llm_preds[name] = ([lookup_predictions(preds, r) or [] for r in rows.to_dict("records")], preds)
    for name, (ids, _) in llm_preds.items():
        if name not in methods:
            methods[name] = {"kind": "predictions", "recall": scored(name, ids)}

    # --- complementarity: gbdt vs gbdt + llm -------------------------------------------------------------
    if cfg.combine and cfg.gbdt is not None and len(train):
        for name, (ids, train_preds) in llm_preds.items():
            res = combine_with_llm(train, rows, ids, train_preds, advertisers, pool_frames, cfg.gbdt, k=kmax)
            plain_name = f"gbdt [same rows as '{name}', {res['mode']}]"
            combo_name = f"gbdt + {name} [{res['mode']}]"
            for mname, key in ((plain_name, "gbdt"), (combo_name, "gbdt + llm")):
                methods[mname] = {
                    "kind": "combination",
                    "recall": scored(mname, res[key]["ranked"]),
                    "ceiling": {s: share(res[key]["in_candidates"], m) for s, m in masks.items()},
                }
            methods[combo_name]["of"] = plain_name  # paired_tests: gbdt + llm against gbdt, same rows
            combos.append(
                {
                    "llm": name,
                    "mode": res["mode"],
                    "n_fit_rows": res["n_fit_rows"],
                    "gbdt": plain_name,
                    "gbdt + llm": combo_name,
                }
            )

    labels = rows["label_advertiser_id"].tolist()
    for name, ranked in ranked_by.items():
        methods[name]["recall_ci"] = recall_cis(ranked, labels, masks, ks)
    result = {
        "command": shlex.join(sys.argv),
        "config": _jsonable(cfg),
        "anchor_dates": dates,
        "n_rows": {s: int(m.sum()) for s, m in masks.items()},
        "n_train_rows": len(train),
        "n_train_labelled": int(train["label_advertiser_id"].notna().sum()),
        "ks": list(ks),
        "methods": _jsonable(methods),
        "combinations": _jsonable(combos),
        "paired": paired_tests(ranked_by, methods, labels, masks, ks),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    (out_dir / "eval.md").write_text(eval_markdown(result))
    return result


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
