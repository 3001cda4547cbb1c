"""One LLM's predictions on a set of rows: prompt -> generate -> parse -> resolve (:func:`run_llm`), and
what a run is scored on besides recall (format and hallucination rates, the prompt's candidate ceiling).

Generation, parsing and resolution are inference's own: :func:`llm_predictor.infer.decoding.generate`, or for
greedy list / XML decoding the serving engine (:class:`llm_predictor.infer.hf_engine.TransformersEngine`, prefix
KV cache, or vLLM with ``EvalConfig.engine_kind='vllm'``: the model then comes as its folder); :mod:`llm_predictor.data.parsing` (``parse_answer`` for the XML format, ``parse_list`` for
sft_text_20, ``parse_single`` for the 1-advertiser SFT format, whose K candidates come from K beams or K
samples as in Table 2); :meth:`llm_predictor.data.resolver.AdvertiserResolver.resolve_list`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adprior.progress import Progress
from llm_predictor.eval.config import EvalConfig, output_format
from llm_predictor.eval.rows import as_list

log = logging.getLogger(__name__)
PROGRESS_CHUNK = 32  # rows per generate call, so that progress (rows done, rate, ETA) moves


@dataclass
class LLMRun:
    """One model's predictions on a set of rows."""

    ids: list[list[int]]  # resolved, de-duplicated advertiser ids per row
    names: list[list[str]]  # parsed names per row (merged over candidates)
    raw: list[list[str]]  # decoded completions per row
    status: list[str]  # 'ok' | 'partial' | 'unparseable' per row
    n_names: list[int]  # parsed names per row
    n_unresolved: list[int]  # names that resolve to no advertiser, per row
    seconds: float = 0.0


def _merge_status(statuses: Sequence[str]) -> str:
    """One row's status over its candidates: 'ok' when all are, 'unparseable' when none parsed, else 'partial'."""
    if not statuses or all(s == "unparseable" for s in statuses):
        return "unparseable"
    return "ok" if all(s == "ok" for s in statuses) else "partial"


def run_llm(
    model: Any,
    tokenizer: Any,
    rows: pd.DataFrame,
    pools: Mapping[str, list[str]],
    resolver: Any,
    cfg: EvalConfig,
    interests: Sequence[str] = (),
) -> LLMRun:
    """Prompt, generate, parse and resolve one model's predictions for ``rows`` (``interests``: the
    interest vocabulary of the constrained answer grammar)."""
    from llm_predictor.data.parsing import parse_answer, parse_list, parse_single
    from llm_predictor.data.prompts import PromptBudget, allowed_names, build_prompt, hf_token_counter
    from llm_predictor.infer.decoding import generate

    fmt = output_format(cfg)
    dec = dataclasses.replace(cfg.decode, mode=fmt if fmt in ("single", "list") else "answer")
    budget = PromptBudget(max_user_tokens=cfg.budget_tokens, count_tokens=hf_token_counter(tokenizer))
    records = rows.to_dict("records")
    # the constrained pool: the row's active advertisers, then the preset pool (as llm_predictor.infer.plan.plan)
    allowed = []
    for r in records:
        pool = pools.get(str(r["anchor_date"])[:10], [])
        if dec.constrained:
            allowed.append(allowed_names(r, pool, budget))
    use_engine = cfg.engine and fmt != "single" and dec.strategy == "greedy" and dec.expand() == 1
    if isinstance(model, str) and not use_engine:
        raise ValueError(
            f"engine_kind={cfg.engine_kind!r} serves greedy list/XML decoding only; "
            f"use engine_kind='transformers' for {dec.strategy} decoding of the {fmt!r} format"
        )
    t0 = time.perf_counter()
    if use_engine:  # the serving path: prefix KV cache, constrained output already wrapped as XML
        outs = _engine_generate(
            model,
            tokenizer,
            records,
            pools,
            allowed if dec.constrained else None,
            cfg,
            dec,
            budget,
            interests,
        )
    else:
        prompts = [
            build_prompt(cfg.template, r, pools.get(str(r["anchor_date"])[:10], []), budget) for r in records
        ]
        outs = []
        # sampling seeds once per generate call: one call keeps its draws independent of the chunking
        step = max(len(prompts), 1) if dec.strategy == "sample" else PROGRESS_CHUNK
        with Progress(len(prompts), "eval generate", "rows", logger=log) as bar:
            for start in range(0, len(prompts), step):
                chunk = slice(start, start + step)
                outs.extend(
                    generate(
                        model,
                        tokenizer,
                        prompts[chunk],
                        dec,
                        allowed[chunk] if dec.constrained else None,
                        interests,
                    )
                )
                bar.update(len(prompts[chunk]))
    seconds = time.perf_counter() - t0
    parse = {"single": parse_single, "list": parse_list}.get(fmt, parse_answer)
    run = LLMRun([], [], [], [], [], [], seconds)
    for cands in outs:
        parsed = [parse(c) for c in cands]
        names = list(dict.fromkeys(n for p in parsed for n in p.advertisers))
        ids, resolutions = resolver.resolve_list(names)
        run.ids.append(ids)
        run.names.append(names)
        run.raw.append(list(cands))
        run.status.append(_merge_status([p.status for p in parsed]))
        run.n_names.append(len(resolutions))
        run.n_unresolved.append(sum(r.advertiser_id is None for r in resolutions))
    return run


def pool_ceiling(rows: pd.DataFrame, pool_ids: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Per row: is the label among the advertisers the prompt offers (the user's active advertisers plus the
    anchor date's preset pool)? A catalogue-constrained LLM can name nothing else, so the share of True rows
    bounds its Recall@K from above."""
    out = []
    for r in rows.to_dict("records"):
        offered = {int(a) for a in as_list(r.get("active_advertiser_ids"))}
        offered.update(int(a) for a in pool_ids.get(str(r["anchor_date"])[:10], []))
        out.append(int(r["label_advertiser_id"]) in offered)
    return np.array(out, dtype=bool)


def _engine_generate(
    model: Any,
    tokenizer: Any,
    records: list[dict[str, Any]],
    pools: Mapping[str, list[str]],
    allowed: list[list[str]] | None,
    cfg: EvalConfig,
    dec: Any,
    budget: Any,
    interests: Sequence[str] = (),
) -> list[list[str]]:
    """Greedy list / XML generation through :class:`llm_predictor.infer.hf_engine.TransformersEngine` (what
    ``adprior infer`` serves with): the shared prompt prefix of each anchor date is computed once and its KV
    cache reused, the same tokens as the plain path at a fraction of the prompt compute. Constrained output
    comes back as the XML answer (``wrap_as_answer``)."""
    from llm_predictor.data.prompts import shared_prefix, user_suffix
    from llm_predictor.infer.engines import EngineConfig
    from llm_predictor.infer.hf_engine import TransformersEngine

    engine_cfg = EngineConfig(
        kind="transformers",
        batch_size=dec.batch_size,
        max_new_tokens=dec.max_new_tokens,
        constrained=dec.constrained,
        max_names=dec.max_names,
        max_interests=dec.max_interests,
        seed=dec.seed,
    )
    if isinstance(model, str):  # a model folder for vLLM (EvalConfig.engine_kind='vllm')
        from llm_predictor.infer.backends import make_engine

        engine = make_engine(dataclasses.replace(engine_cfg, kind="vllm", model=model))
    else:
        engine = TransformersEngine(engine_cfg, model=model, tokenizer=tokenizer)
    by_date: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_date.setdefault(str(r["anchor_date"])[:10], []).append(i)
    outs: list[list[str]] = [[] for _ in records]
    with Progress(len(records), "eval generate", "rows", logger=log) as bar:
        for day, all_idx in by_date.items():
            prefix = shared_prefix(cfg.template, pools.get(day, []), budget.max_item_chars)
            for start in range(0, len(all_idx), PROGRESS_CHUNK):
                idx = all_idx[start : start + PROGRESS_CHUNK]
                gens = engine.generate(
                    prefix,
                    [user_suffix(cfg.template, records[i], budget) for i in idx],
                    [allowed[i] for i in idx] if allowed is not None else None,
                    interests,
                )
                for i, g in zip(idx, gens, strict=True):
                    outs[i] = [g.text]
                bar.update(len(idx))
    if isinstance(model, str):
        engine.close()
    log.info(
        "eval engine: %d prompt tokens, %d computed (prefix cache), %d generated",
        engine.stats["prompt_tokens"],
        engine.stats["computed_prompt_tokens"],
        engine.stats["generated_tokens"],
    )
    return outs


def format_stats(run: LLMRun, mask: np.ndarray) -> dict[str, float | None]:
    """Format, hallucination and answer-length rates of a run over the rows of ``mask`` (None without rows)."""
    idx = np.flatnonzero(mask)
    n = len(idx)
    if n == 0:
        return {
            k: None
            for k in (
                "valid_format_rate",
                "partial_rate",
                "unparseable_rate",
                "hallucination_rate",
                "mean_unique_advertisers",
                "mean_names",
            )
        }
    st = Counter(run.status[i] for i in idx)
    names = sum(run.n_names[i] for i in idx)
    return {
        "valid_format_rate": st["ok"] / n,
        "partial_rate": st["partial"] / n,
        "unparseable_rate": st["unparseable"] / n,
        "hallucination_rate": (sum(run.n_unresolved[i] for i in idx) / names) if names else 0.0,
        "mean_unique_advertisers": float(np.mean([len(run.ids[i]) for i in idx])),
        "mean_names": float(np.mean([run.n_names[i] for i in idx])),
    }


def write_predictions(path: Path, rows: pd.DataFrame, run: LLMRun) -> None:
    """A run's predictions, completions and parse status per row, as a parquet file at ``path``."""
    pd.DataFrame(
        {
            "user_id": rows["user_id"].astype("int64").to_numpy(),
            "anchor_date": rows["anchor_date"].astype(str).to_numpy(),
            "label_advertiser_id": rows["label_advertiser_id"].to_numpy(),
            "advertiser_ids": run.ids,
            "advertiser_names": run.names,
            "completions": run.raw,
            "status": run.status,
        }
    ).to_parquet(path, index=False)
