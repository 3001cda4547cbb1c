"""Offline evaluation of advertiser prediction (design.md "Metrics"; paper 4.2, Tables 2-3).

:func:`evaluate` scores, on the *same* labelled eval rows and per set (V1 = all rows, V0 = ``in_v0``):

* every LLM given (``EvalConfig.models``): prompt (:mod:`llm_predictor.data.prompts`) -> :func:`decoding.generate`
  -> parsing (``parse_answer`` for the XML format, ``parse_list`` for sft_text_20, ``parse_single`` for the
  1-advertiser SFT format, whose K candidates come from K beams or K samples as in Table 2) -> resolver
  -> de-duplicated advertiser IDs; with format and hallucination rates;
* precomputed predictions (a dict or a parquet file: user_id [, anchor_date], advertiser_ids);
* the non-LLM baselines of :mod:`llm_predictor.eval.baselines` (popularity, history, co-occurrence) and a
  LightGBM reranker (:class:`GBDTReranker`) over history / text-match / co-occurrence / brand-group /
  popularity candidates, with its candidate-set ceiling;
* the paper's "complementary" claim: :func:`combine_with_llm` trains the same reranker with and without
  LLM features (and LLM candidates) on the same rows: 'gbdt' vs 'gbdt + llm'.

Recall@K counts a labelled row as a hit when its label is among the first K resolved, de-duplicated
predictions (:func:`llm_predictor.eval.baselines.recall_at_k`). Results go to ``<out>/eval.json`` and
``<out>/eval.md`` (a table, with the command line and the configuration).
"""

from __future__ import annotations

import copy
import dataclasses
import html
import json
import logging
import math
import re
import shlex
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adprior.contracts import LIST_FIELDS, PROFILE_FIELDS
from llm_predictor.data.compile import read_preset_pool
from llm_predictor.eval.baselines import Baselines, hits_at_k, recall_at_k
from llm_predictor.infer.decoding import DecodeConfig

log = logging.getLogger(__name__)

KS: tuple[int, ...] = (1, 5, 20)
SETS: tuple[str, ...] = ("V1", "V0")
FORMATS = ("auto", "xml", "list", "single")


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class GBDTConfig:
    """The LightGBM reranker over candidate (user, advertiser) pairs."""

    n_candidates: int = 50  # non-LLM candidates per row (history, text, co-occurrence, siblings, popularity)
    n_text: int = 10  # candidates whose name/domain appears in the user's texts (brands, URLs, searches)
    n_cooc: int = 20  # co-occurrence candidates
    n_siblings: int = 10  # brand-group siblings of history advertisers
    n_llm: int = 20  # 'gbdt + llm': the LLM's top predictions added on top of the n_candidates
    text_items: int = 20  # items per text field scanned for advertiser names
    objective: str = "lambdarank"  # 'lambdarank' | 'binary'
    n_estimators: int = 200  # boosting rounds
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 10  # LightGBM min_data_in_leaf
    max_train_rows: int | None = 20000  # labelled rows used to fit (random sample); None = all
    crossfit_folds: int = 5  # 'gbdt + llm' without LLM predictions on train rows: folds over eval users
    min_llm_train_rows: int = 30  # fewer labelled train rows with LLM predictions -> cross-fit instead
    n_jobs: int = 2  # LightGBM threads
    seed: int = 0


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
    budget_tokens: int = 1024  # PromptBudget.max_user_tokens, counted with the model's tokenizer
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
                items = _as_list(v)
                new.append(
                    items[::-1] if spec == "reverse" else [items[i] for i in rng.permutation(len(items))]
                )
            out[col] = new
        return out
    raise ValueError(f"unknown ablation {spec!r}: use drop:<field>, shuffle or reverse")


def _format_for(cfg: EvalConfig) -> str:
    if cfg.output_format != "auto":
        if cfg.output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {FORMATS}")
        return cfg.output_format
    if cfg.template in ("sft_text", "sft_sid"):
        return "single"
    if cfg.template == "sft_text_20":
        return "list"
    return "xml"


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def row_key(row: Mapping[str, Any]) -> tuple[int, str]:
    """(user_id, anchor date 'YYYY-MM-DD') of an examples row."""
    return int(row["user_id"]), str(row["anchor_date"])[:10]


def _lookup(preds: Mapping[Any, Sequence[int]], row: Mapping[str, Any]) -> list[int] | None:
    """A row's precomputed predictions, keyed by (user_id, date str), (user_id, date) or user_id."""
    uid, d = row_key(row)
    for key in ((uid, d), (uid, row.get("anchor_date")), uid):
        try:
            if key in preds:
                return [int(a) for a in preds[key]]
        except TypeError:
            continue
    return None


def load_predictions(path: Path) -> dict[Any, list[int]]:
    """A predictions parquet (user_id, optional anchor_date, advertiser_ids) as a lookup dict."""
    df = pd.read_parquet(path)
    out: dict[Any, list[int]] = {}
    has_date = "anchor_date" in df.columns
    for r in df.to_dict("records"):
        ids = [int(a) for a in _as_list(r["advertiser_ids"])]
        out[(int(r["user_id"]), str(r["anchor_date"])[:10]) if has_date else int(r["user_id"])] = ids
    return out


def load_advertisers(
    data: Path | None, examples: pd.DataFrame | None = None, pools: Mapping[Any, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """The raw advertisers table; without a data root, ids and names gathered from the examples."""
    if data is not None and (Path(data) / "advertisers").exists():
        import pyarrow.dataset as pads

        return pads.dataset(Path(data) / "advertisers", format="parquet").to_table().to_pandas()
    names: dict[int, str] = {}
    if examples is not None:
        for ids, nm in zip(examples["active_advertiser_ids"], examples["active_advertisers"], strict=True):
            for a, n in zip(_as_list(ids), _as_list(nm), strict=False):
                names.setdefault(int(a), str(n))
        lab = examples[examples["label_advertiser_id"].notna()]
        for a, n in zip(lab["label_advertiser_id"], lab["label_advertiser_name"], strict=True):
            names.setdefault(int(a), str(n))
    for pool in (pools or {}).values():
        for a, n in zip(pool["advertiser_id"], pool["name"], strict=True):
            names.setdefault(int(a), str(n))
    return pd.DataFrame(
        {
            "advertiser_id": list(names),
            "name": list(names.values()),
            "aliases": [[] for _ in names],
            "domain": [None] * len(names),
            "brand_group": [None] * len(names),
            "category": [None] * len(names),
            "is_active": [True] * len(names),
        }
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


# --------------------------------------------------------------------------------------------------
# Text matching helpers
# --------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[0-9a-z]+")
_APOS_RE = re.compile(r"['’‘`´]")
_CORP = frozenset({"inc", "llc", "ltd", "co", "corp", "company", "corporation", "plc", "gmbh"})
TEXT_FIELDS: tuple[str, ...] = (
    "top_brands",
    "offsite_urls",
    "offsite_searches",
    "onsite_searches",
    "attributed_conversions",
    "matched_conversions",
)
_MAX_GRAM = 4


def text_tokens(text: Any) -> list[str]:
    """Lower-case ASCII word tokens ('&' -> 'and', accents and apostrophes dropped)."""
    t = unicodedata.normalize("NFKD", html.unescape(str(text)).casefold())
    t = "".join(c for c in t if not unicodedata.combining(c))
    t = _APOS_RE.sub("", t.replace("&", " and ").replace("+", " and "))
    return _WORD_RE.findall(t)


def _name_keys(name: Any, aliases: Any, domain: Any) -> set[str]:
    """Match keys of an advertiser: name/alias phrases (with and without spaces) and the domain stem."""
    keys: set[str] = set()
    for text in [name, *_as_list(aliases)]:
        if text is None:
            continue
        toks = text_tokens(text)
        variants = [toks]
        if len(toks) > 1 and toks[0] == "the":
            variants.append(toks[1:])
        if len(toks) > 1 and toks[-1] in _CORP:
            variants.append(toks[:-1])
        for v in variants:
            if v and len(v) <= _MAX_GRAM:
                keys.add(" ".join(v))
                keys.add("".join(v))
    if isinstance(domain, str) and domain:
        from llm_predictor.data.resolver import domain_host, domain_stem

        host = domain_host(domain)
        if host:
            keys.add(domain_stem(host))
    return {k for k in keys if len(k.replace(" ", "")) >= 3}


def _category_parts(text: Any) -> tuple[str, ...]:
    """'Beauty > Skincare' and 'Beauty / Skincare' (compile's rendering) -> ('beauty', 'skincare')."""
    if not isinstance(text, str) or not text.strip():
        return ()
    return tuple(p.strip().casefold() for p in re.split(r"\s*[>/]\s*", text) if p.strip())


# --------------------------------------------------------------------------------------------------
# GBDT reranker
# --------------------------------------------------------------------------------------------------

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
        self.key_index: dict[str, list[int]] = defaultdict(list)
        if advertisers is not None:
            for r in advertisers.to_dict("records"):
                aid = int(r["advertiser_id"])
                self.category[aid] = _category_parts(r.get("category"))
                g = r.get("brand_group")
                if isinstance(g, str) and g:
                    self.group[aid] = g
                    self.group_members[g].append(aid)
                for k in _name_keys(r.get("name"), r.get("aliases"), r.get("domain")):
                    self.key_index[k].append(aid)
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
            hist = [int(a) for a in _as_list(ids)]
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
        if not self.key_index:
            return out
        for f in TEXT_FIELDS:
            for i, item in enumerate(_as_list(row.get(f))[: self.cfg.text_items]):
                toks = text_tokens(item)[:40]
                found: set[int] = set()
                for n in range(1, _MAX_GRAM + 1):
                    for j in range(len(toks) - n + 1):
                        gram = toks[j : j + n]
                        for key in (" ".join(gram), "".join(gram)) if n > 1 else (gram[0],):
                            hit = self.key_index.get(key)
                            if hit:
                                found.update(hit)
                for aid in found:
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
        hist = list(dict.fromkeys(int(a) for a in _as_list(row.get("active_advertiser_ids"))))
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
        top_cats = [_category_parts(c) for c in _as_list(row.get("top_categories"))]
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
    ev = _align(llm_eval, eval_rows)
    base = GBDTReranker(cfg, advertisers, pools).fit_stats(train)
    mode = "crossfit"
    fit_rows = None
    tr: list[list[int] | None] = []
    if llm_train is not None:
        lab_train = train[train["label_advertiser_id"].notna()]
        tr = _align(llm_train, lab_train)
        covered = np.array([p is not None for p in tr], dtype=bool)
        if covered.sum() >= cfg.min_llm_train_rows:
            mode = "train"
            fit_rows = lab_train[covered]
            tr = [p for p, c in zip(tr, covered, strict=True) if c]
    out: dict[str, Any] = {"mode": mode}
    if mode == "train":
        assert fit_rows is not None
        plain = base.clone().fit(fit_rows, loo=True)
        combo = base.clone().fit(fit_rows, loo=True, llm=tr)
        out["gbdt"] = dict(zip(("ranked", "in_candidates"), plain.predict(eval_rows, k=k), strict=True))
        out["gbdt + llm"] = dict(
            zip(("ranked", "in_candidates"), combo.predict(eval_rows, ev, k=k), strict=True)
        )
        out["n_fit_rows"] = len(fit_rows)
        out["importance"] = combo.feature_importance()
        return out
    # cross-fitting over eval users
    n = len(eval_rows)
    folds = np.array([hash_fold(int(u), cfg.crossfit_folds) for u in eval_rows["user_id"]])
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
            m.fit(fit_rows, loo=False, llm=[ev[i] for i in train_idx] if use else None)
            ranked, inc = m.predict(eval_rows.iloc[test], [ev[i] for i in test] if use else None, k=k)
            for j, i in enumerate(test):
                res[name][0][i] = ranked[j]
                res[name][1][i] = inc[j]
    for name, (ranked, inc) in res.items():
        out[name] = {"ranked": [r or [] for r in ranked], "in_candidates": inc}
    out["n_fit_rows"] = fitted
    return out


def hash_fold(user_id: int, k: int) -> int:
    """A stable fold of a user (splitmix64 of the id, mod k)."""
    z = (user_id + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return int((z ^ (z >> 31)) % k)


def _align(
    preds: Sequence[Sequence[int] | None] | Mapping[Any, Sequence[int]], rows: pd.DataFrame
) -> list[list[int] | None]:
    if isinstance(preds, Mapping):
        return [_lookup(preds, r) for r in rows.to_dict("records")]
    if len(preds) != len(rows):
        raise ValueError(f"{len(preds)} predictions for {len(rows)} rows")
    return [None if p is None else [int(a) for a in p] for p in preds]


# --------------------------------------------------------------------------------------------------
# LLM runs
# --------------------------------------------------------------------------------------------------


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
    from llm_predictor.data.prompts import PromptBudget, build_prompt, hf_token_counter, sanitize_text
    from llm_predictor.infer.decoding import generate

    fmt = _format_for(cfg)
    dec = dataclasses.replace(cfg.decode, mode=fmt if fmt in ("single", "list") else "answer")
    budget = PromptBudget(max_user_tokens=cfg.budget_tokens, count_tokens=hf_token_counter(tokenizer))
    records = rows.to_dict("records")
    allowed = []
    for r in records:
        pool = pools.get(str(r["anchor_date"])[:10], [])
        if dec.constrained:
            names = [
                sanitize_text(n, budget.max_item_chars) for n in [*_as_list(r["active_advertisers"]), *pool]
            ]
            allowed.append(list(dict.fromkeys(n for n in names if n)))
    use_engine = cfg.engine and fmt != "single" and dec.strategy == "greedy" and dec.expand() == 1
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
        outs = generate(model, tokenizer, prompts, dec, allowed if dec.constrained else None, interests)
    seconds = time.perf_counter() - t0
    run = LLMRun([], [], [], [], [], [], seconds)
    for cands in outs:
        parsed = []
        for c in cands:
            if fmt == "single":
                parsed.append(parse_single(c))
            elif fmt == "list":
                parsed.append(parse_list(c))
            else:
                parsed.append(parse_answer(c))
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
        offered = {int(a) for a in _as_list(r.get("active_advertiser_ids"))}
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
    """Greedy list / XML generation through :class:`llm_predictor.infer.engines.TransformersEngine` (what
    ``adprior infer`` serves with): the shared prompt prefix of each anchor date is computed once and its KV
    cache reused, the same tokens as the plain path at a fraction of the prompt compute. Constrained output
    comes back as the XML answer (``wrap_as_answer``)."""
    from llm_predictor.data.prompts import shared_prefix, user_suffix
    from llm_predictor.infer.engines import EngineConfig, TransformersEngine

    engine = TransformersEngine(
        EngineConfig(
            kind="transformers",
            batch_size=dec.batch_size,
            max_new_tokens=dec.max_new_tokens,
            constrained=dec.constrained,
            max_names=dec.max_names,
            max_interests=dec.max_interests,
            seed=dec.seed,
        ),
        model=model,
        tokenizer=tokenizer,
    )
    by_date: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_date.setdefault(str(r["anchor_date"])[:10], []).append(i)
    outs: list[list[str]] = [[] for _ in records]
    for day, idx in by_date.items():
        prefix = shared_prefix(cfg.template, pools.get(day, []), budget.max_item_chars)
        gens = engine.generate(
            prefix,
            [user_suffix(cfg.template, records[i], budget) for i in idx],
            [allowed[i] for i in idx] if allowed is not None else None,
            interests,
        )
        for i, g in zip(idx, gens, strict=True):
            outs[i] = [g.text]
    log.info(
        "eval engine: %d prompt tokens, %d computed (prefix cache), %d generated",
        engine.stats["prompt_tokens"],
        engine.stats["computed_prompt_tokens"],
        engine.stats["generated_tokens"],
    )
    return outs


def _format_stats(run: LLMRun, mask: np.ndarray) -> dict[str, float | None]:
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


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _set_masks(rows: pd.DataFrame, sets: Sequence[str]) -> dict[str, np.ndarray]:
    masks = {}
    for s in sets:
        if s == "V1":
            masks[s] = np.ones(len(rows), dtype=bool)
        elif s == "V0":
            masks[s] = rows["in_v0"].fillna(False).astype(bool).to_numpy()
        else:
            raise ValueError(f"unknown set {s!r}; expected 'V1' or 'V0'")
    return masks


def _recalls(
    ranked: Sequence[Sequence[int]], rows: pd.DataFrame, masks: Mapping[str, np.ndarray], ks: Sequence[int]
) -> dict[str, dict[str, float | None]]:
    labels = rows["label_advertiser_id"].tolist()
    out: dict[str, dict[str, float | None]] = {}
    for s, m in masks.items():
        r = [ranked[i] for i in np.flatnonzero(m)]
        y = [labels[i] for i in np.flatnonzero(m)]
        out[s] = {f"R@{k}": _num(recall_at_k(r, y, k)) for k in ks}
    return out


def _recall_cis(
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


def _paired_tests(
    ranked_by: Mapping[str, Sequence[Sequence[int]]],
    methods: Mapping[str, Mapping[str, Any]],
    labels: Sequence[Any],
    masks: Mapping[str, np.ndarray],
    ks: Sequence[int],
) -> list[dict[str, Any]]:
    """Exact McNemar tests on the same rows: every pair of LLM methods (in evaluation order), every LLM
    against the best non-LLM method (baselines, gbdt) of that set and K (picked on these rows: a choice that
    favours the baseline), and every ablation against its full-prompt run. ``a_only`` / ``b_only`` count the
    rows only one of the two hits; ``diff`` = R@K(a) - R@K(b); ``p`` = two-sided binomial test of a_only
    against b_only (1.0 when they never disagree)."""
    from scipy.stats import binomtest

    llms = [n for n, m in methods.items() if m.get("kind") in PAIRED_KINDS and n in ranked_by]
    others = [n for n, m in methods.items() if m.get("kind") in NON_LLM_KINDS and n in ranked_by]
    ablations = [
        (n, m["of"]) for n, m in methods.items() if m.get("kind") == "ablation" and m.get("of") in ranked_by
    ]
    out: list[dict[str, Any]] = []
    for s, mask in masks.items():
        if not mask.any():
            continue
        for k in ks:
            hits = {
                n: np.array(
                    [
                        bool(h)
                        for h, keep in zip(hits_at_k(ranked_by[n], labels, k), mask, strict=True)
                        if keep
                    ]
                )
                for n in [*llms, *others, *(a for a, _ in ablations)]
            }
            pairs = [(a, b) for i, a in enumerate(llms) for b in llms[i + 1 :]]
            if others:
                best = max(others, key=lambda n: (hits[n].mean(), -others.index(n)))
                pairs += [(a, best) for a in llms]
            pairs += ablations
            for a, b in pairs:
                a_only = int((hits[a] & ~hits[b]).sum())
                b_only = int((~hits[a] & hits[b]).sum())
                p = binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
                out.append(
                    {
                        "set": s,
                        "k": k,
                        "a": a,
                        "b": b,
                        "n": int(mask.sum()),
                        "a_only": a_only,
                        "b_only": b_only,
                        "diff": round(float(hits[a].mean() - hits[b].mean()), 4),
                        "p": round(float(p), 4),
                    }
                )
    return out


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _share(flags: Sequence[bool], mask: np.ndarray) -> float | None:
    sel = [flags[i] for i in np.flatnonzero(mask)]
    return round(sum(sel) / len(sel), 4) if sel else None


def _sample_rows(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    df = df.sort_values(["anchor_date", "user_id"]).reset_index(drop=True)
    if n is not None and len(df) > n:
        df = df.sample(n=n, random_state=seed).sort_values(["anchor_date", "user_id"]).reset_index(drop=True)
    return df


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
    from llm_predictor.data.compile import load_examples

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
    rows = _sample_rows(ev_all, cfg.max_examples, cfg.seed)
    masks = _set_masks(rows, cfg.sets)
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
        return _recalls(ranked, rows, masks, ks)

    # --- non-LLM baselines -------------------------------------------------------------------------
    if cfg.baselines:
        b = Baselines(k=kmax).fit(train)
        for name in ("popularity", "history", "cooccurrence"):
            ranked = getattr(b, name)(rows)
            methods[name] = {"kind": "baseline", "recall": scored(name, ranked)}
    if cfg.gbdt is not None and len(train):
        t0 = time.perf_counter()
        rr = GBDTReranker(cfg.gbdt, advertisers, pool_frames).fit_stats(train)
        rr.fit(train, loo=True)
        ranked, inc = rr.predict(rows, k=kmax)
        methods["gbdt"] = {
            "kind": "gbdt",
            "recall": scored("gbdt", ranked),
            "ceiling": {s: _share(inc, m) for s, m in masks.items()},
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

            model, tok = load_model(spec, cfg.device)
        else:
            model, tok = spec
        run = run_llm(model, tok, rows, pool_names, resolver, cfg, interests)
        method = f"llm: {name}"
        methods[method] = {
            "kind": "llm",
            "recall": scored(method, run.ids),
            "format": {s: _format_stats(run, m) for s, m in masks.items()},
            "ceiling": {s: _share(in_pools, m) for s, m in masks.items()},  # labels the prompt's pools offer
            "seconds_per_row": round(run.seconds / max(len(rows), 1), 4),
        }
        _write_predictions(out_dir / f"predictions_{_slug(method)}.parquet", rows, run)
        for spec in cfg.ablations:  # Table 4: the same model and rows, one prompt alteration each
            ab_run = run_llm(
                model, tok, ablate_rows(rows, spec, cfg.seed), pool_names, resolver, cfg, interests
            )
            methods[f"{method} [{spec}]"] = {
                "kind": "ablation",
                "ablation": spec,
                "of": method,
                "recall": scored(f"{method} [{spec}]", ab_run.ids),
                "format": {s: _format_stats(ab_run, m) for s, m in masks.items()},
            }
        train_preds = None
        if cfg.llm_train_examples > 0 and cfg.combine and cfg.gbdt is not None:
            lab_train = _sample_rows(
                train[train["label_advertiser_id"].notna()], cfg.llm_train_examples, cfg.seed
            )
            tr_run = run_llm(model, tok, lab_train, pool_names, resolver, cfg, interests)
            train_preds = {
                row_key(r): ids for r, ids in zip(lab_train.to_dict("records"), tr_run.ids, strict=True)
            }
        llm_preds[method] = (run.ids, train_preds)
        del model
    for name, preds in (predictions or {}).items():
        llm_preds[name] = ([_lookup(preds, r) or [] for r in rows.to_dict("records")], dict(preds))
    for name, path in cfg.predictions.items():
        preds = load_predictions(Path(path))
        llm_preds[name] = ([_lookup(preds, r) or [] for r in rows.to_dict("records")], preds)
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
                    "ceiling": {s: _share(res[key]["in_candidates"], m) for s, m in masks.items()},
                }
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
        methods[name]["recall_ci"] = _recall_cis(ranked, labels, masks, ks)
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
        "paired": _paired_tests(ranked_by, methods, labels, masks, ks),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    (out_dir / "eval.md").write_text(eval_markdown(result))
    return result


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def _write_predictions(path: Path, rows: pd.DataFrame, run: LLMRun) -> None:
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


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def eval_markdown(result: Mapping[str, Any]) -> str:
    """The report as a Markdown table: methods x (R@K per set), plus format columns for LLM rows."""
    sets = list(result["n_rows"])
    ks = result["ks"]
    lines = [
        "# Advertiser prediction: offline evaluation",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Anchor dates: {', '.join(result['anchor_dates'])}; labelled rows scored: "
        + ", ".join(f"{s} = {n}" for s, n in result["n_rows"].items())
        + f"; train rows: {result['n_train_rows']} ({result['n_train_labelled']} labelled).",
        "",
    ]
    head = [
        "method",
        *(f"{s} R@{k}" for s in sets for k in ks),
        "valid fmt",
        "partial",
        "unparseable",
        "halluc.",
        "uniq. adv",
        "cand. ceiling",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = sets[0] if sets else None
    for name, m in result["methods"].items():
        cells = [name]
        for s in sets:
            cells += [_fmt(m["recall"][s][f"R@{k}"]) for k in ks]
        f = (m.get("format") or {}).get(first) or {}
        cells += [
            _fmt(f.get("valid_format_rate"), True),
            _fmt(f.get("partial_rate"), True),
            _fmt(f.get("unparseable_rate"), True),
            _fmt(f.get("hallucination_rate"), True),
            f"{f['mean_unique_advertisers']:.1f}" if f.get("mean_unique_advertisers") is not None else "–",
            _fmt((m.get("ceiling") or {}).get(first), True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Format, hallucination and ceiling columns are on {first}. Hallucination = parsed names that "
        "resolve to no advertiser / all parsed names; candidate ceiling = share of labels inside the "
        "reranker's candidate set (gbdt rows) or among the advertisers the prompt offers, the user's active "
        "advertisers plus the preset pool (llm rows: the most a catalogue-constrained model can reach).",
        "",
    ]
    if result.get("combinations"):
        lines += [
            "Complementarity (same fitting rows for both): "
            + "; ".join(
                f"'{c['gbdt + llm']}' vs '{c['gbdt']}' ({c['mode']}, {c['n_fit_rows']} rows)"
                for c in result["combinations"]
            ),
            "",
        ]
    lines += [
        "<details><summary>Configuration</summary>",
        "",
        "```json",
        json.dumps(result["config"], indent=2),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)
