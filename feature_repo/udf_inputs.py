"""How the on-demand views' UDFs (features.py) read their input rows: nulls, lists, category paths, ranks,
and the candidate features of one predictor's list (:func:`prediction_candidate_features`), computed by the
same code for every predictor (the LLM, the heuristic control).

Feast re-executes a UDF's source text with only ``pd``/``np`` in scope, so the UDFs import this module
inside their bodies by its installed name, ``adprior_feature_repo.udf_inputs`` (setup.py ships this folder
as that package). ``feast apply`` imports it too, by its bare name; it defines no Feast objects.
"""

import re

import numpy as np
import pandas as pd

from world.schema import CATEGORY_SEPARATOR, category_levels

# Words that never make a free-text interest match a category (llm_interest_match).
STOP_WORDS = frozenset({"and", "the", "for", "with", "from", "other", "all", "more"})


def is_null(v: object) -> bool:
    """None, or a value ``pd.isna`` calls missing (arrays and lists it cannot judge are not null)."""
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # arrays, lists
        return False


def as_list(v: object) -> list:
    """A list-valued feature as a plain list (null -> [])."""
    return [] if is_null(v) else list(v)


def column(inputs: pd.DataFrame, name: str) -> pd.Series:
    """The input column ``name``, or all nulls when the request did not bring it."""
    return inputs[name] if name in inputs.columns else pd.Series([None] * len(inputs), dtype=object)


def category_path(text: object) -> tuple:
    """A lower-cased category path: 'Home > Decor' (advertisers), 'Home / Decor' (interests, compiled
    examples) -> ('home', 'decor'); null -> ()."""
    return () if is_null(text) else tuple(level.lower() for level in category_levels(str(text)))


def rank_of(candidate: object, ids: object) -> int:
    """1-based position of the candidate advertiser in the id list ``ids``; 0 when absent or null."""
    if is_null(candidate):
        return 0
    c = int(candidate)
    for pos, x in enumerate(as_list(ids), start=1):
        if not is_null(x) and int(x) == c:
            return pos
    return 0


def _words(text: object) -> set:
    return set() if is_null(text) else set(re.findall(r"[^\W\d_]{3,}", str(text).lower())) - STOP_WORDS


def interest_matches(interest: object, cat_path: tuple, cat_words: set) -> bool:
    """A taxonomy interest ('Apparel / Athletic') matches when it equals the category path or an ancestor
    of it; a free-text interest when it shares a word (>= 3 letters, stop words excluded) with any level."""
    if not is_null(interest) and CATEGORY_SEPARATOR.search(str(interest)):  # a taxonomy term
        ip = category_path(interest)
        return bool(ip) and cat_path[: len(ip)] == ip
    return bool(_words(interest) & cat_words)


def prediction_candidate_features(inputs: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """``<prefix>_rank`` (1-based position of ``candidate_advertiser_id`` in ``advertiser_ids``, 0 = absent
    or no prediction), ``<prefix>_in_top5``, ``<prefix>_in_top20``, ``<prefix>_has_prediction`` (a
    prediction row exists, even an empty list) and ``<prefix>_interest_match`` (an interest matches the
    candidate's ``category``) of one predictor's rows, indexed like ``inputs``."""
    n = len(inputs)
    ids, interests = column(inputs, "advertiser_ids"), column(inputs, "interests")
    category, cand = column(inputs, "category"), column(inputs, "candidate_advertiser_id")
    rank = np.zeros(n, dtype=np.int64)
    has = np.zeros(n, dtype=np.int64)
    match = np.zeros(n, dtype=np.int64)
    for i in range(n):
        a = ids.iloc[i]
        has[i] = 0 if is_null(a) else 1
        rank[i] = rank_of(cand.iloc[i], a)
        cat_path = category_path(category.iloc[i])
        cat_words: set = set()
        for level in cat_path:
            cat_words |= _words(level)
        if cat_path and any(interest_matches(t, cat_path, cat_words) for t in as_list(interests.iloc[i])):
            match[i] = 1
    return pd.DataFrame(
        {
            f"{prefix}_rank": rank,
            f"{prefix}_in_top5": ((rank >= 1) & (rank <= 5)).astype(np.int64),
            f"{prefix}_in_top20": ((rank >= 1) & (rank <= 20)).astype(np.int64),
            f"{prefix}_has_prediction": has,
            f"{prefix}_interest_match": match,
        },
        index=inputs.index,
    )
