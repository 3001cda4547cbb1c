"""The candidate features of the on-demand views (features.py), the one place their semantics live: how a
user's lists and a candidate advertiser become ``<predictor>_rank`` / top-k / interest match
(:func:`prediction_features`) and the history rank / category / brand overlap (:func:`behavior_features`).

Both are vectorised over the candidates of ONE user: the user's values are read once (an id -> position
map, the parsed interests and top categories, the folded brands), each distinct category or name of the
candidates is judged once, and ranks are looked up for all candidates at once. The UDFs get rows of
any number of users (online: one user's candidates; historical retrieval: every impression), so their
bodies call :func:`prediction_candidate_features` / :func:`behavior_candidate_features`, which split the
rows by their user-side values (one split when every row holds the same objects, as an online request
broadcast from one user row does) and call the one-user functions per split. The online fast path
(``adprior.store.CandidateFeatures``) runs the views' own UDFs, hence this same code.

Feast re-executes a UDF's source text with only ``pd``/``np`` in scope, so the UDFs import this module
inside their bodies by its installed name, ``adprior_feature_repo.udf_inputs`` (setup.py ships this folder
as that package). ``feast apply`` imports it too, by its bare name; it defines no Feast objects. A registry
keeps the UDF text it was applied with, and a repo copied for an experiment keeps its definitions, so the
names older UDF text imports stay: ``is_null``, ``as_list``, ``column``, ``category_path``, ``rank_of`` and
:func:`prediction_candidate_features`.
"""

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from world.schema import CATEGORY_SEPARATOR, category_levels

# Words that never make a free-text interest match a category (interest_matches).
STOP_WORDS = frozenset({"and", "the", "for", "with", "from", "other", "all", "more"})
PREDICTION_OUTPUTS = ("rank", "in_top5", "in_top20", "has_prediction", "interest_match")  # '<prefix>_' each
BEHAVIOR_OUTPUTS = ("hist_rank", "hist_in_active", "category_in_top_categories", "brand_in_top_brands")


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
    return () if is_null(text) else _path_of(str(text))


def words_of(text: object) -> frozenset:
    """The lower-cased words (>= 3 letters, stop words excluded) of a text; null -> none."""
    return frozenset() if is_null(text) else _words_of(str(text))


# Category and interest texts repeat across requests (a catalogue's categories, a taxonomy's terms): each
# is parsed once per process. Bounded, so that free text cannot grow them without limit.
@lru_cache(maxsize=1 << 16)
def _path_of(text: str) -> tuple:
    return tuple(level.lower() for level in category_levels(text))


@lru_cache(maxsize=1 << 16)
def _words_of(text: str) -> frozenset:
    return frozenset(re.findall(r"[^\W\d_]{3,}", text.lower())) - STOP_WORDS


def interest_matches(interest: object, cat_path: tuple, cat_words: set) -> bool:
    """A taxonomy interest ('Apparel / Athletic') matches when it equals the category path or an ancestor
    of it; a free-text interest when it shares a word (>= 3 letters, stop words excluded) with any level."""
    if not is_null(interest) and CATEGORY_SEPARATOR.search(str(interest)):  # a taxonomy term
        ip = category_path(interest)
        return bool(ip) and cat_path[: len(ip)] == ip
    return bool(words_of(interest) & cat_words)


def rank_of(candidate: object, ids: object) -> int:
    """1-based position of one candidate advertiser in the id list ``ids``; 0 when absent or null (the
    scalar form of :func:`ranks`; UDF text registered before the vectorised functions imports it)."""
    return int(ranks(ids, np.array([candidate], dtype=object))[0])


# ------------------------------------------------------------------------------ one user, many candidates


def ranks(ids: object, candidates: Sequence) -> np.ndarray:
    """1-based position of each candidate advertiser in the id list ``ids`` (its first occurrence; null
    entries keep their position), 0 when absent, when the candidate is null or when ``ids`` is null."""
    cand = np.asarray(candidates, dtype=object) if not isinstance(candidates, np.ndarray) else candidates
    out = np.zeros(len(cand), dtype=np.int64)
    first: dict[int, int] = {}
    for pos, x in enumerate(as_list(ids), start=1):
        if not is_null(x):
            first.setdefault(int(x), pos)
    if not first or not len(cand):
        return out
    if cand.dtype.kind in "iu":
        keys, ok = cand.astype(np.int64, copy=False), np.ones(len(cand), dtype=bool)
    else:  # object / float: nulls never match; others compare as int(), like the ids
        ok = ~pd.isna(cand)
        keys = np.zeros(len(cand), dtype=np.int64)
        keys[ok] = [int(c) for c in cand[ok]]
    at = pd.Index(np.fromiter(first, dtype=np.int64, count=len(first))).get_indexer(keys)
    hit = ok & (at >= 0)
    out[hit] = np.fromiter(first.values(), dtype=np.int64, count=len(first))[at[hit]]
    return out


def per_value(values: Sequence, judge: Callable[[str], bool]) -> np.ndarray:
    """``judge(str(v))`` as 0/1 for each value, computed once per distinct value; null values get 0."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if not len(arr):
        return np.zeros(0, dtype=np.int64)
    null = pd.isna(arr) if arr.dtype == object else np.zeros(len(arr), dtype=bool)
    keys = np.array([None if n else str(v) for v, n in zip(arr, null, strict=True)], dtype=object)
    codes, distinct = pd.factorize(keys)  # nulls -> code -1
    hits = np.array([1 if judge(d) else 0 for d in distinct] + [0], dtype=np.int64)
    return hits[codes]


def prediction_features(
    ids: object, interests: object, candidates: Sequence, categories: Sequence, prefix: str
) -> dict[str, np.ndarray]:
    """One user's predictor features of each candidate: ``<prefix>_rank`` (1-based position of the
    candidate in ``ids``, 0 = absent or no prediction), ``_in_top5``, ``_in_top20``, ``_has_prediction``
    (a prediction row exists, even an empty list) and ``_interest_match`` (an interest matches the
    candidate's category, :func:`interest_matches`); int64 arrays aligned with ``candidates``."""
    rank = ranks(ids, candidates)
    wanted = as_list(interests)

    def matches(category: str) -> bool:
        cat_path = category_path(category)
        cat_words: set = set()
        for level in cat_path:
            cat_words |= words_of(level)
        return bool(cat_path) and any(interest_matches(t, cat_path, cat_words) for t in wanted)

    values = (
        rank,
        ((rank >= 1) & (rank <= 5)).astype(np.int64),
        ((rank >= 1) & (rank <= 20)).astype(np.int64),
        np.full(len(rank), 0 if is_null(ids) else 1, dtype=np.int64),
        per_value(categories, matches) if wanted else np.zeros(len(rank), dtype=np.int64),
    )
    return {f"{prefix}_{name}": v for name, v in zip(PREDICTION_OUTPUTS, values, strict=True)}


def behavior_features(
    active_ids: object,
    top_categories: object,
    top_brands: object,
    candidates: Sequence,
    names: Sequence,
    categories: Sequence,
) -> dict[str, np.ndarray]:
    """One user's behaviour features of each candidate: ``hist_rank`` (1-based recency rank among the
    user's past-conversion advertisers, 0 = absent), ``hist_in_active``, ``category_in_top_categories``
    (the candidate's category path equals, or is an ancestor or descendant of, a top category) and
    ``brand_in_top_brands`` (its name equals a top brand, trimmed and case-folded); int64 arrays."""
    rank = ranks(active_ids, candidates)
    tops = [category_path(t) for t in as_list(top_categories)]
    brands = {str(b).strip().casefold() for b in as_list(top_brands) if not is_null(b)}

    def overlaps(category: str) -> bool:
        p = category_path(category)
        for q in tops:
            k = min(len(p), len(q))
            if k and p[:k] == q[:k]:
                return True
        return False

    values = (
        rank,
        (rank > 0).astype(np.int64),
        per_value(categories, overlaps) if tops else np.zeros(len(rank), dtype=np.int64),
        per_value(names, lambda n: n.strip().casefold() in brands)
        if brands
        else np.zeros(len(rank), np.int64),
    )
    return dict(zip(BEHAVIOR_OUTPUTS, values, strict=True))


# ----------------------------------------------------------------------------- rows of any users (the UDFs)


def _key(v: object) -> object:
    """A hashable stand-in for a user-side value: equal for equal lists (list or array), None for null."""
    if is_null(v):
        return None
    if isinstance(v, str | bytes):
        return ("scalar", v)
    try:
        return tuple(v)  # type: ignore[call-overload]
    except TypeError:
        return ("scalar", v)


def user_groups(user_columns: list[pd.Series]) -> list[np.ndarray]:
    """Row positions of each distinct combination of the user-side values (first appearance order).

    One group without hashing when every column holds one object in every row (an online request
    broadcast from one user row)."""
    cols = [c.to_numpy(dtype=object) for c in user_columns]
    n = len(cols[0]) if cols else 0
    if n == 0:
        return []
    if all(all(v is col[0] for v in col) for col in cols):
        return [np.arange(n)]
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*([_key(v) for v in col] for col in cols), strict=True)):
        groups.setdefault(key, []).append(i)
    return [np.asarray(rows, dtype=np.int64) for rows in groups.values()]


def _by_user(
    inputs: pd.DataFrame, user: list[str], names: list[str], compute: Callable[..., dict[str, np.ndarray]]
) -> pd.DataFrame:
    """``compute(user values..., rows)`` per group of rows sharing the user-side columns ``user``, put back
    in row order as int64 columns ``names`` indexed like ``inputs``."""
    out = {name: np.zeros(len(inputs), dtype=np.int64) for name in names}
    user_cols = [column(inputs, c) for c in user]
    for rows in user_groups(user_cols):
        first = int(rows[0])
        got = compute(*[c.iloc[first] for c in user_cols], rows)
        for name in names:
            out[name][rows] = got[name]
    return pd.DataFrame(out, index=inputs.index)


def prediction_candidate_features(inputs: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """:func:`prediction_features` of UDF input rows (``advertiser_ids``, ``interests``, ``category``,
    ``candidate_advertiser_id``; rows of any users), indexed like ``inputs``."""
    cand = column(inputs, "candidate_advertiser_id").to_numpy()
    category = column(inputs, "category").to_numpy(dtype=object)
    return _by_user(
        inputs,
        ["advertiser_ids", "interests"],
        [f"{prefix}_{n}" for n in PREDICTION_OUTPUTS],
        lambda ids, interests, rows: prediction_features(ids, interests, cand[rows], category[rows], prefix),
    )


def behavior_candidate_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """:func:`behavior_features` of UDF input rows (``active_advertiser_ids``, ``top_categories``,
    ``top_brands``, ``name``, ``category``, ``candidate_advertiser_id``), indexed like ``inputs``."""
    cand = column(inputs, "candidate_advertiser_id").to_numpy()
    name = column(inputs, "name").to_numpy(dtype=object)
    category = column(inputs, "category").to_numpy(dtype=object)
    return _by_user(
        inputs,
        ["active_advertiser_ids", "top_categories", "top_brands"],
        list(BEHAVIOR_OUTPUTS),
        lambda ids, cats, brands, rows: behavior_features(
            ids, cats, brands, cand[rows], name[rows], category[rows]
        ),
    )
