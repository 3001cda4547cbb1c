"""retrieval/index.py: advertiser-restricted faiss search (flat / IVF / HNSW x selector / partition)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.filters import ranges_bitmap
from retrieval.index import ItemIndex
from retrieval.index_config import IndexConfig

N, D, N_ADV = 3000, 16, 40
TINY = (900, 901)  # advertisers with 3 items and 1 item
KINDS = ("flat", "ivf", "hnsw")
STRATEGIES = {
    "bitmap": {"filter": "selector", "selector": "bitmap"},
    "batch": {"filter": "selector", "selector": "batch"},
    "partition": {"filter": "partition"},
}


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered unit vectors, shuffled non-contiguous item ids, skewed advertisers plus two tiny ones."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, D))
    x = centers[rng.integers(0, 20, N)] + 0.5 * rng.standard_normal((N, D))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, N_ADV + 1)
    advs = rng.choice(np.arange(N_ADV) * 7 + 3, size=N, p=weights / weights.sum())
    advs[:3], advs[3] = TINY[0], TINY[1]
    items = rng.choice(np.arange(10 * N), size=N, replace=False)
    return items.astype(np.int64), advs.astype(np.int64), x.astype(np.float32)


ITEMS, ADVS, VECS = make_data()
_CACHE: dict[tuple[str, str], ItemIndex] = {}


def get_index(kind: str, strategy: str) -> ItemIndex:
    key = (kind, strategy)
    if key not in _CACHE:
        _CACHE[key] = ItemIndex(
            ITEMS, ADVS, VECS, IndexConfig(kind=kind, nprobe=8, ef_search=64, seed=1, **STRATEGIES[strategy])
        )
    return _CACHE[key]


def queries(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return VECS[rng.integers(0, N, n)] + 0.3 * rng.standard_normal((n, D)).astype(np.float32)


def allowed_sets(n: int, seed: int = 2) -> list[list[int]]:
    """Random advertiser sets: 1-5 known advertisers, sometimes a tiny one or an unknown id."""
    rng = np.random.default_rng(seed)
    known = np.unique(ADVS)
    sets = []
    for i in range(n):
        s = rng.choice(known, size=rng.integers(1, 6), replace=False).tolist()
        if i % 3 == 0:
            s.append(int(rng.choice(TINY)))
        if i % 4 == 0:
            s.append(123456)  # unknown
        sets.append(s)
    return sets


def brute_force(q: np.ndarray, allowed: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isin(ADVS, allowed)
    scores = VECS[mask] @ q
    ids = ITEMS[mask]
    order = np.argsort(-scores, kind="stable")[:k]
    s = np.full(k, -np.inf, dtype=np.float32)
    i = np.full(k, -1, dtype=np.int64)
    s[: order.size], i[: order.size] = scores[order], ids[order]
    return s, i


ADV_OF = dict(zip(ITEMS.tolist(), ADVS.tolist(), strict=True))


def assert_only_allowed(scores: np.ndarray, ids: np.ndarray, sets: list[list[int]]) -> None:
    for s_row, i_row, allowed in zip(scores, ids, sets, strict=True):
        found = i_row >= 0
        assert all(ADV_OF[int(i)] in allowed for i in i_row[found])
        assert np.isneginf(s_row[~found]).all() and np.isfinite(s_row[found]).all()
        assert not found[np.argmin(found) :].any() if (~found).any() else True  # padding only at the end
        assert (np.diff(s_row[found]) <= 1e-6).all()  # best first
        assert len(set(i_row[found].tolist())) == int(found.sum())  # no duplicates


# ---------------------------------------------------------------------------------------------
# Restriction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_never_returns_other_advertisers(kind: str, strategy: str) -> None:
    index = get_index(kind, strategy)
    sets = allowed_sets(40)
    for k in (1, 10, 100):
        scores, ids = index.search_advertisers(queries(40), sets, k)
        assert scores.shape == ids.shape == (40, k) and ids.dtype == np.int64 and scores.dtype == np.float32
        assert_only_allowed(scores, ids, sets)
    assert index.dropped == 0


@pytest.mark.parametrize("strategy", ["bitmap", "batch"])
@pytest.mark.parametrize("ef", [1, 16, 200])
def test_hnsw_few_allowed_items(strategy: str, ef: int) -> None:
    index = get_index("hnsw", strategy)
    sets = [[TINY[0]], [TINY[1]], list(TINY), [TINY[1], 999_999]] * 5
    scores, ids = index.search_advertisers(queries(len(sets), seed=5), sets, 50, ef_search=ef)
    assert_only_allowed(scores, ids, sets)
    assert ((ids >= 0).sum(axis=1) <= 4).all()
    assert (ids[:, 4:] == -1).all()


def test_dropped_when_faiss_misbehaves() -> None:
    """The guard drops anything a (buggy) faiss answer puts outside the allowed ranges."""
    index = ItemIndex(ITEMS, ADVS, VECS, IndexConfig(kind="flat"))

    class AllPositions:
        def search(self, x: np.ndarray, k: int, params: object = None) -> tuple[np.ndarray, np.ndarray]:
            return np.ones((len(x), k), np.float32), np.tile(np.arange(k, dtype=np.int64), (len(x), 1))

    index._index = AllPositions()
    allowed = [int(ADVS[~np.isin(ADVS, TINY)][0]), TINY[1]]
    scores, ids = index.search_advertisers(VECS[0], allowed, 20)
    assert_only_allowed(scores[None], ids[None], [allowed])
    assert index.dropped > 0


# ---------------------------------------------------------------------------------------------
# Exactness and recall
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "strategy", "exact"),
    [
        ("flat", "bitmap", False),
        ("flat", "batch", False),
        ("flat", "partition", False),
        ("ivf", "partition", False),
        ("hnsw", "partition", False),
        ("ivf", "bitmap", True),
        ("hnsw", "batch", True),
    ],
)
def test_exact_filtered_equals_numpy(kind: str, strategy: str, exact: bool) -> None:
    index = get_index(kind, strategy)
    q, sets = queries(30, seed=3), allowed_sets(30, seed=4)
    for k in (1, 7, 100, 5000):
        scores, ids = index.search_advertisers(q, sets, k, exact=exact)
        for i, allowed in enumerate(sets):
            s, ii = brute_force(q[i], allowed, k)
            np.testing.assert_array_equal(ids[i], ii)
            np.testing.assert_allclose(scores[i], s, rtol=1e-5, atol=1e-5)


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    hits = total = 0
    for g, t in zip(got, truth, strict=True):
        t = set(t[t >= 0].tolist())
        hits += len(t & set(g[g >= 0].tolist()))
        total += len(t)
    return hits / total


@pytest.mark.parametrize(
    ("kind", "override", "floor"),
    [
        ("ivf", {"nprobe": 10_000}, 1.0),  # every list: exact
        ("ivf", {"nprobe": 28}, 0.9),  # half of the 55 lists
        ("hnsw", {"ef_search": 1000}, 0.95),
    ],
)
@pytest.mark.parametrize("strategy", ["bitmap", "batch"])
def test_approximate_filtered_recall(kind: str, override: dict, floor: float, strategy: str) -> None:
    index = get_index(kind, strategy)
    q, sets = queries(50, seed=6), allowed_sets(50, seed=7)
    _, truth = index.search_advertisers(q, sets, 20, exact=True)
    _, got = index.search_advertisers(q, sets, 20, **override)
    assert recall(got, truth) >= floor


def test_unrestricted_flat_matches_numpy() -> None:
    index = get_index("flat", "bitmap")
    q = queries(20, seed=8)
    for k in (1, 50):
        scores, ids = index.search(q, k)
        full = q @ VECS.T
        order = np.argsort(-full, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(ids, ITEMS[order])
        np.testing.assert_allclose(scores, np.take_along_axis(full, order, axis=1), rtol=1e-5, atol=1e-5)
    scores, ids = index.search(q[:2], N + 5)  # more than the index holds: padded
    assert (ids[:, N:] == -1).all() and np.isneginf(scores[:, N:]).all()
    assert set(ids[0, :N].tolist()) == set(ITEMS.tolist())


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_unrestricted_approximate_recall(kind: str) -> None:
    index = get_index(kind, "bitmap")
    q = queries(50, seed=9)
    _, truth = index.search(q, 20, exact=True)
    _, got = index.search(q, 20, nprobe=20, ef_search=200)
    assert recall(got, truth) >= 0.9


def test_single_query_shapes_and_cosine() -> None:
    rng = np.random.default_rng(10)
    raw = VECS * rng.uniform(0.5, 3.0, size=(N, 1)).astype(np.float32)
    index = ItemIndex(ITEMS, ADVS, raw, IndexConfig(kind="flat", metric="cosine", filter="partition"))
    q = 4.0 * queries(1, seed=11)[0]
    scores, ids = index.search_advertisers(q, [3, 10], 5)
    assert scores.shape == ids.shape == (5,)
    s, ii = brute_force(q / np.linalg.norm(q), [3, 10], 5)  # VECS are the unit-norm directions of raw
    np.testing.assert_array_equal(ids, ii)
    np.testing.assert_allclose(scores, s, rtol=1e-5, atol=1e-5)
    s1, i1 = index.search(q, 3)
    assert s1.shape == i1.shape == (3,) and (s1 <= 1.0 + 1e-5).all()


# ---------------------------------------------------------------------------------------------
# Unknown and empty advertiser sets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_unknown_and_empty_advertisers(kind: str, strategy: str) -> None:
    index = get_index(kind, strategy)
    q = queries(4, seed=12)
    scores, ids = index.search_advertisers(q, [[], [123456, -5], np.array([], dtype=np.int64), []], 10)
    assert (ids == -1).all() and np.isneginf(scores).all()
    known = int(ADVS[0]) if ADVS[0] not in TINY else 3
    same = np.repeat(q[:1], 4, axis=0)
    for exact in (False, True):
        scores, ids = index.search_advertisers(
            same, [[known, 123456], [known], [known, known], [-1, known]], 10, exact=exact
        )
        assert (ids == ids[1]).all() and (
            scores == scores[1]
        ).all()  # unknown ids and duplicates change nothing
        assert (ids[1] >= 0).any()
    assert index.n_allowed([known, 123456, known]) == int(np.isin(ADVS, [known]).sum())
    assert index.n_allowed([]) == 0


# ---------------------------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", ["bitmap", "partition"])
def test_save_load_round_trip(kind: str, strategy: str, tmp_path: Path) -> None:
    index = get_index(kind, strategy)
    q, sets = queries(25, seed=13), allowed_sets(25, seed=14)
    index.save(tmp_path / "ix")
    loaded = ItemIndex.load(tmp_path / "ix")
    assert loaded.config == index.config and len(loaded) == len(index) and loaded.dim == D
    for a, b in (
        (index.search(q, 30), loaded.search(q, 30)),
        (index.search_advertisers(q, sets, 30), loaded.search_advertisers(q, sets, 30)),
        (
            index.search_advertisers(q, sets, 30, exact=True),
            loaded.search_advertisers(q, sets, 30, exact=True),
        ),
    ):
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(loaded.advertisers, np.unique(ADVS))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((ITEMS, ADVS[:-1], VECS), "advertiser_ids"),
        ((ITEMS[:-1], ADVS[:-1], VECS), "vectors"),
        ((ITEMS, ADVS, VECS[:, 0]), "vectors"),
        ((ITEMS, ADVS, VECS[None]), "vectors"),
        ((ITEMS, ADVS, np.where(np.arange(N)[:, None] == 7, np.nan, VECS)), "vectors"),
        ((ITEMS, ADVS, np.where(np.arange(N)[:, None] == 9, np.inf, VECS)), "vectors"),
        ((ITEMS, ADVS, VECS.astype(np.float64) * 1e300), "vectors"),
        ((ITEMS.astype(np.float64), ADVS, VECS), "item_ids"),
        ((ITEMS[:, None], ADVS, VECS), "item_ids"),
        ((np.zeros(N, np.int64), ADVS, VECS), "item_ids"),
        ((ITEMS - ITEMS.max() - 1, ADVS, VECS), "item_ids"),
        ((ITEMS[:0], ADVS[:0], VECS[:0]), "item_ids"),
        ((ITEMS, ADVS.astype(str), VECS), "advertiser_ids"),
    ],
)
def test_bad_build_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ItemIndex(*args)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="kind"):
        IndexConfig(kind="lsh")
    with pytest.raises(ValueError, match="filter"):
        IndexConfig(filter="post")
    with pytest.raises(ValueError, match="nprobe"):
        IndexConfig(nprobe=0)
    with pytest.raises(ValueError, match="nlist"):
        ItemIndex(ITEMS[:10], ADVS[:10], VECS[:10], IndexConfig(kind="ivf", nlist=11))


def test_bad_search_input() -> None:
    index = get_index("ivf", "bitmap")
    q = queries(3, seed=15)
    with pytest.raises(ValueError, match="queries"):
        index.search(q[:, :-1], 5)
    with pytest.raises(ValueError, match="queries"):
        index.search(np.where(np.arange(3)[:, None] == 1, np.nan, q), 5)
    with pytest.raises(ValueError, match="queries"):
        index.search_advertisers(q[None], [[3]] * 3, 5)
    with pytest.raises(ValueError, match="queries"):
        index.search_advertisers(np.full(D, np.inf), [3], 5)
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must"):
            index.search_advertisers(q, [[3]] * 3, bad_k)
    with pytest.raises(ValueError, match="advertiser_ids"):
        index.search_advertisers(q, [[3]] * 2, 5)
    with pytest.raises(ValueError, match="advertiser_ids"):
        index.search_advertisers(q, 3, 5)
    with pytest.raises(ValueError, match=r"advertiser_ids\[1\]"):
        index.search_advertisers(q, [[3], [1.5], [3]], 5)
    with pytest.raises(ValueError, match="advertiser_ids"):
        index.search_advertisers(q[0], [[3, 10]], 5)
    with pytest.raises(ValueError, match="nprobe"):
        index.search(q, 5, nprobe=0)


def test_ranges_bitmap_matches_packbits() -> None:
    rng = np.random.default_rng(16)
    for n in (1, 7, 8, 9, 63, 64, 65, 1000):
        cuts = np.sort(rng.choice(np.arange(n + 1), size=min(n + 1, 6), replace=False))
        starts, ends = cuts[0::2][: len(cuts) // 2], cuts[1::2]
        mask = np.zeros(n, bool)
        for s, e in zip(starts, ends, strict=True):
            mask[s:e] = True
        np.testing.assert_array_equal(ranges_bitmap(starts, ends, n), np.packbits(mask, bitorder="little"))
