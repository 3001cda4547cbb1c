"""feature_repo/udf_inputs.py: the vectorised candidate features equal their row-by-row definition (written
out here as the oracle) on random rows of many users with every kind of null, and the on-demand views of
features.py return exactly what these functions compute."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pandas as pd
import pytest
from adprior_feature_repo import udf_inputs as u

from adprior import store as st

# ------------------------------------------------------------------------------------ the oracle


def rank_ref(candidate: object, ids: object) -> int:
    if u.is_null(candidate):
        return 0
    for pos, x in enumerate(u.as_list(ids), start=1):
        if not u.is_null(x) and int(x) == int(candidate):
            return pos
    return 0


def prediction_ref(r: pd.Series, prefix: str) -> dict[str, int]:
    rank = rank_ref(r["candidate_advertiser_id"], r["advertiser_ids"])
    path = u.category_path(r["category"])
    words: set = set()
    for level in path:
        words |= u.words_of(level)
    match = bool(path) and any(u.interest_matches(t, path, words) for t in u.as_list(r["interests"]))
    return {
        f"{prefix}_rank": rank,
        f"{prefix}_in_top5": int(1 <= rank <= 5),
        f"{prefix}_in_top20": int(1 <= rank <= 20),
        f"{prefix}_has_prediction": 0 if u.is_null(r["advertiser_ids"]) else 1,
        f"{prefix}_interest_match": int(match),
    }


def behavior_ref(r: pd.Series) -> dict[str, int]:
    rank = rank_ref(r["candidate_advertiser_id"], r["active_advertiser_ids"])
    p = u.category_path(r["category"])
    cat = any(
        min(len(p), len(q)) and p[: min(len(p), len(q))] == q[: min(len(p), len(q))]
        for q in map(u.category_path, u.as_list(r["top_categories"]))
    )
    nm = r["name"]
    brand = not u.is_null(nm) and any(
        not u.is_null(b) and str(b).strip().casefold() == str(nm).strip().casefold()
        for b in u.as_list(r["top_brands"])
    )
    return {
        "hist_rank": rank,
        "hist_in_active": int(rank > 0),
        "category_in_top_categories": int(cat),
        "brand_in_top_brands": int(brand),
    }


def oracle(frame: pd.DataFrame, fn, *args) -> pd.DataFrame:
    return pd.DataFrame([fn(r, *args) for _, r in frame.iterrows()], index=frame.index).astype(np.int64)


# ------------------------------------------------------------------------------------ random rows

CATEGORIES = [
    "Apparel > Athletic",
    "Apparel > Casual",
    "Apparel",
    "Home > Decor",
    "Home > Kitchen > Cookware",
    "Electronics & Audio",
    "",
    None,
    np.nan,
]
INTERESTS = [
    "Apparel / Athletic",
    "Apparel",
    "home decor ideas",
    "ATHLETIC wear",
    "Home / Kitchen",
    "the and",
    None,
]
NAMES = ["Nike", " nike ", "NIKE", "Walmart", "Target", "Straße", "STRASSE", "", None]
BRANDS = ["nike", "Target ", "strasse", None, "zz"]


def random_user(rng: np.random.Generator) -> dict[str, object]:
    """One user's side of the rows: lists as Python lists or numpy arrays, empty, null, with null items."""

    def ids() -> object:
        kind = rng.integers(5)
        if kind == 0:
            return None
        values = [int(v) for v in rng.choice(30, size=int(rng.integers(0, 12)), replace=True)]
        if kind == 1:
            return np.array(values, dtype=np.int64)
        if kind == 2 and values:
            return [*values[:2], None, *values[2:]]
        return values

    def pick(pool: list, k: int) -> object:
        if rng.random() < 0.15:
            return None
        items = [pool[i] for i in rng.integers(len(pool), size=int(rng.integers(0, k)))]
        return np.array(items, dtype=object) if rng.random() < 0.3 else items

    return {
        "advertiser_ids": ids(),
        "interests": pick(INTERESTS, 4),
        "active_advertiser_ids": ids(),
        "top_categories": pick([c for c in CATEGORIES if isinstance(c, str)] + ["Home / Decor"], 4),
        "top_brands": pick(BRANDS, 3),
    }


def random_rows(rng: np.random.Generator, n: int, users: int, candidates_as: str) -> pd.DataFrame:
    pool = [random_user(rng) for _ in range(users)]
    who = rng.integers(users, size=n)
    cand: list[object] = [int(c) for c in rng.integers(0, 35, size=n)]
    if candidates_as == "object":
        cand = [None if i % 7 == 3 else c for i, c in enumerate(cand)]
    elif candidates_as == "float":
        cand = [np.nan if i % 7 == 3 else float(c) for i, c in enumerate(cand)]  # type: ignore[arg-type]
    frame = pd.DataFrame({k: [pool[w][k] for w in who] for k in pool[0]})
    frame["candidate_advertiser_id"] = pd.Series(cand, dtype=None if candidates_as == "int" else object)
    if candidates_as == "int":
        frame["candidate_advertiser_id"] = frame["candidate_advertiser_id"].astype(np.int64)
    frame["category"] = [CATEGORIES[i] for i in rng.integers(len(CATEGORIES), size=n)]
    frame["name"] = [NAMES[i] for i in rng.integers(len(NAMES), size=n)]
    return frame.set_index(pd.Index(rng.permutation(n) + 100))  # an index that is not 0..n-1


@pytest.mark.parametrize("candidates_as", ["int", "object", "float"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_features_equal_the_row_by_row_definition(seed, candidates_as):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, 400, users=25, candidates_as=candidates_as)
    for prefix in ("llm", "heuristic"):
        got = u.prediction_candidate_features(rows, prefix)
        pd.testing.assert_frame_equal(got, oracle(rows, prediction_ref, prefix))
    pd.testing.assert_frame_equal(u.behavior_candidate_features(rows), oracle(rows, behavior_ref))
    assert {c: int(v) for c, v in u.behavior_candidate_features(rows).sum().items()} != {
        "hist_rank": 0,
        "hist_in_active": 0,
        "category_in_top_categories": 0,
        "brand_in_top_brands": 0,
    }  # the random rows do hit


def test_one_user_broadcast_is_one_group_and_equals_the_rows():
    rng = np.random.default_rng(5)
    user = random_user(rng)
    user["advertiser_ids"], user["interests"] = [7, 3, None, 7, 12], ["Apparel / Athletic", "home decor"]
    n = 60
    cand = rng.integers(0, 15, size=n)
    rows = pd.DataFrame({k: [v] * n for k, v in user.items()})  # the same object in every row
    rows["candidate_advertiser_id"] = cand
    rows["category"] = [CATEGORIES[i] for i in rng.integers(len(CATEGORIES), size=n)]
    rows["name"] = [NAMES[i] for i in rng.integers(len(NAMES), size=n)]
    assert len(u.user_groups([rows["advertiser_ids"], rows["interests"]])) == 1
    got = u.prediction_features(
        user["advertiser_ids"], user["interests"], cand, rows["category"].to_numpy(dtype=object), "llm"
    )
    want = oracle(rows, prediction_ref, "llm")
    for c in want.columns:
        np.testing.assert_array_equal(got[c], want[c].to_numpy())
    assert got["llm_rank"][cand == 7].tolist() == [1] * int((cand == 7).sum())  # the first occurrence
    assert got["llm_rank"][cand == 12].tolist() == [5] * int((cand == 12).sum())  # nulls keep a position
    pd.testing.assert_frame_equal(u.behavior_candidate_features(rows), oracle(rows, behavior_ref))


def test_scalar_helpers_and_empty_rows():
    assert u.rank_of(3, [1, None, 3, 3]) == 3 and u.rank_of(None, [1]) == 0 and u.rank_of(1, None) == 0
    assert u.rank_of(2.0, np.array([5, 2])) == 2
    empty = random_rows(np.random.default_rng(0), 0, users=1, candidates_as="int")
    got = u.prediction_candidate_features(empty, "llm")
    assert list(got.columns) == [f"llm_{n}" for n in u.PREDICTION_OUTPUTS] and len(got) == 0
    assert (got.dtypes == np.int64).all()
    missing = pd.DataFrame({"candidate_advertiser_id": [1, 2]})  # the request brought no list at all
    assert u.prediction_candidate_features(missing, "llm")["llm_has_prediction"].tolist() == [0, 0]
    assert u.behavior_candidate_features(missing)["hist_rank"].tolist() == [0, 0]


def test_feature_views_run_these_functions():
    sys.path.insert(0, str(st.PROJECT_REPO))
    try:
        features = importlib.import_module("features")
    finally:
        sys.path.remove(str(st.PROJECT_REPO))
    rows = random_rows(np.random.default_rng(3), 120, users=10, candidates_as="int")
    for view, want in (
        (features.llm_candidate_features, u.prediction_candidate_features(rows, "llm")),
        (features.heuristic_candidate_features, u.prediction_candidate_features(rows, "heuristic")),
        (features.behavior_candidate_features, u.behavior_candidate_features(rows)),
    ):
        got = view.feature_transformation.transform(rows)
        pd.testing.assert_frame_equal(got, want)
        assert [f.name for f in view.features] == list(got.columns)  # the declared schema, in order
