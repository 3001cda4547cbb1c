"""A faiss index of ad (item) embeddings with advertiser-restricted search (paper 3.6.1).

The *LLM candidate generator* of the retrieval stage searches the two-tower user embedding against
the item embeddings, but only among the items of the (up to 20) advertisers the fine-tuned LLM
predicted for that user; the other generators search without restriction. :class:`ItemIndex` holds
both: one main faiss index (``IndexConfig.kind``: exact ``flat``, ``ivf`` or ``hnsw``) answers
unrestricted searches, and advertiser-restricted searches use one of two filter strategies:

* ``selector``: the main index is searched with a faiss ``IDSelector`` (an ``IDSelectorBitmap`` over
  the index positions by default, or an ``IDSelectorBatch`` hash set) passed through
  ``SearchParameters``/``SearchParametersIVF``/``SearchParametersHNSW`` (``sel=``). faiss then only
  *scores* allowed items, but an approximate index still walks its usual search path: IVF scans
  ``nprobe`` lists and HNSW a graph neighbourhood bounded by ``efSearch``. When the allowed items
  are few, both may find fewer than ``k`` of them, so rows may end in padding (below).
* ``partition``: one small exact ``IndexFlatIP`` per advertiser; a restricted search searches only
  the allowed advertisers' partitions and merges their top-k. Exact, always full (``k`` results
  when the advertisers own ``k`` items), at the price of a second copy of the vectors.

Items are stored sorted by advertiser (stable), so an advertiser's items occupy one contiguous range
of *positions* (0..n-1). Positions are the faiss ids (plain ``add``, no ``IndexIDMap``), which keeps
selectors simple (a bitmap of a few ranges); ``item_ids[position]`` maps results back to item ids.

Result conventions, for every search: ``(scores, item_ids)`` best first, scores are inner products
(cosine with ``metric='cosine'``) as float32, and missing results are padded with item id ``-1`` and
score ``-inf`` (faiss itself pads with ``-FLT_MAX``; it is replaced). A restricted search never
returns an item of an advertiser outside the given set: besides the selector, every faiss answer is
checked against the allowed position ranges and anything outside (which would be a faiss bug) is
dropped, logged and counted in :attr:`ItemIndex.dropped`. Unknown advertiser ids contribute nothing;
an empty (or wholly unknown) advertiser set gives an all-padding row without calling faiss.

``faiss.omp_set_num_threads`` is process-wide: with ``IndexConfig.threads > 0`` it is set before
every build and search of this index (also affecting other faiss users in the process).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("flat", "ivf", "hnsw")
FILTERS = ("selector", "partition")
SELECTORS = ("bitmap", "batch")
METRICS = ("ip", "cosine")
FORMAT_VERSION = 1

Vectors = np.ndarray | Sequence[Sequence[float]]
IdArray = np.ndarray | Sequence[int]


@dataclass
class IndexConfig:
    """How an :class:`ItemIndex` is built and searched."""

    kind: str = (
        "flat"  # main index: 'flat' (exact IndexFlatIP) | 'ivf' (IndexIVFFlat) | 'hnsw' (IndexHNSWFlat)
    )
    metric: str = (
        "ip"  # 'ip' = inner product of the vectors as given | 'cosine' = L2-normalised copies, then IP
    )
    nlist: int = 0  # IVF inverted lists; 0 = auto: round(sqrt(n)), at most n // 39 (>= 39 train points/list)
    nprobe: int = 32  # IVF lists scanned per query (default; search calls may override it)
    hnsw_m: int = 32  # HNSW neighbours per node (M); level 0 keeps 2*M links
    ef_search: int = 128  # HNSW search beam (default; search calls may override it; faiss uses max(ef, k))
    ef_construction: int = 80  # HNSW build beam: larger = better graph, slower build
    filter: str = "selector"  # restricted search: 'selector' (IDSelector on the main index) | 'partition'
    selector: str = (
        "bitmap"  # 'selector' filter only: 'bitmap' (IDSelectorBitmap) | 'batch' (IDSelectorBatch)
    )
    threads: int = 0  # faiss OpenMP threads set before build/search (process-wide); 0 = leave faiss's setting
    seed: int = 0  # IVF k-means seed (training sample + init) and HNSW level generator seed

    def __post_init__(self) -> None:
        for name, allowed in (
            ("kind", KINDS),
            ("metric", METRICS),
            ("filter", FILTERS),
            ("selector", SELECTORS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"IndexConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("nprobe", "hnsw_m", "ef_search", "ef_construction"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"IndexConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("nlist", "threads"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"IndexConfig.{name} must be >= 0, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _int_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D int64 array; ValueError naming ``name`` otherwise."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _float_matrix(x: Any, name: str, d: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous finite float32 [rows, d] array; ValueError naming ``name`` otherwise."""
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, dim], got shape {a.shape}")
    if a.shape[1] < 1:
        raise ValueError(f"{name} has dimension 0")
    if d is not None and a.shape[1] != d:
        raise ValueError(f"{name} has dimension {a.shape[1]}, the index has {d}")
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32 -> inf, reported below
        a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise ValueError(
            f"{name} holds non-finite values (NaN/inf, or too large for float32), e.g. row {bad}"
        )
    return a


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


# ---------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------


class ItemIndex:
    """Item embeddings in a faiss index, searchable with or without an advertiser restriction.

    Args:
        item_ids: int64 [n], distinct and >= 0 (-1 marks padding in results).
        advertiser_ids: int64 [n], the advertiser of each item.
        vectors: float32 [n, d], finite; row i embeds item_ids[i].
        config: build/search settings (default: exact flat index, selector filter).

    Raises:
        ValueError: shapes, lengths, dtypes or values that do not fit (the message names the argument).

    Memory: the (sorted, possibly normalised) vectors are kept as a numpy array (n*d*4 bytes), plus
    the main index (flat/IVF: another n*d*4; HNSW: that + about n*hnsw_m*8), plus n*d*4 for the
    partitions (filter 'partition') and for the exact flat index that non-flat kinds build on the
    first ``exact=True`` search.
    """

    config: IndexConfig
    build_seconds: dict[str, float]  # wall time of each build step ('main', 'partitions')
    dropped: int  # results outside the allowed advertisers dropped so far (should stay 0)

    def __init__(
        self, item_ids: IdArray, advertiser_ids: IdArray, vectors: Vectors, config: IndexConfig | None = None
    ) -> None:
        cfg = config or IndexConfig()
        items = _int_array(item_ids, "item_ids")
        advs = _int_array(advertiser_ids, "advertiser_ids")
        if items.size == 0:
            raise ValueError("item_ids is empty: an index needs at least one item")
        if advs.shape != items.shape:
            raise ValueError(f"advertiser_ids has length {advs.size} but item_ids has length {items.size}")
        vecs = _float_matrix(vectors, "vectors")
        if vecs.shape[0] != items.size:
            raise ValueError(f"vectors has {vecs.shape[0]} rows but item_ids has length {items.size}")
        if (items < 0).any():
            raise ValueError("item_ids must be >= 0 (-1 marks padding in results)")
        if np.unique(items).size != items.size:
            raise ValueError("item_ids must be distinct")
        if cfg.kind == "ivf" and cfg.nlist > items.size:
            raise ValueError(f"IndexConfig.nlist ({cfg.nlist}) exceeds the number of items ({items.size})")
        order = np.argsort(advs, kind="stable")
        vecs = np.ascontiguousarray(vecs[order])
        if cfg.metric == "cosine":
            faiss.normalize_L2(vecs)
        self._setup(cfg, items[order], advs[order], vecs)
        self._set_threads()
        t0 = time.perf_counter()
        self._index = self._build_main()
        self.build_seconds["main"] = round(time.perf_counter() - t0, 4)
        self._build_partitions()

    # --- construction -----------------------------------------------------------------------

    def _setup(self, cfg: IndexConfig, items: np.ndarray, advs: np.ndarray, vecs: np.ndarray) -> None:
        """State shared by __init__ and load (arrays already sorted by advertiser)."""
        self.config = cfg
        self._item_ids = items  # position -> item id
        self._adv = advs  # position -> advertiser id (sorted)
        self._vectors = vecs  # position -> vector (normalised for metric 'cosine')
        keys, starts, counts = np.unique(advs, return_index=True, return_counts=True)
        self._adv_keys = keys.astype(np.int64)  # distinct advertisers, sorted
        self._adv_start = starts.astype(np.int64)  # first position of each
        self._adv_end = (starts + counts).astype(np.int64)  # one past its last position
        self._positions = np.arange(items.size, dtype=np.int64)
        self._flat: faiss.Index | None = None
        self._parts: list[faiss.Index] = []
        self.build_seconds = {}
        self.dropped = 0

    def _nlist(self) -> int:
        n = self.size
        return self.config.nlist or max(1, min(round(math.sqrt(n)), n // 39))

    def _build_main(self) -> faiss.Index:
        cfg, d = self.config, self.dim
        if cfg.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif cfg.kind == "ivf":
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, self._nlist(), faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = cfg.seed
            index.train(self._vectors)
            index.nprobe = cfg.nprobe
        else:
            index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.rng = faiss.RandomGenerator(cfg.seed)
            index.hnsw.efConstruction = cfg.ef_construction
            index.hnsw.efSearch = cfg.ef_search
        index.add(self._vectors)  # faiss ids = positions 0..n-1
        return index

    def _build_partitions(self) -> None:
        if self.config.filter != "partition":
            return
        t0 = time.perf_counter()
        self._parts = []
        for s, e in zip(self._adv_start.tolist(), self._adv_end.tolist(), strict=True):
            part = faiss.IndexFlatIP(self.dim)
            part.add(self._vectors[s:e])  # partition id j = position s + j
            self._parts.append(part)
        self.build_seconds["partitions"] = round(time.perf_counter() - t0, 4)

    def _exact_index(self) -> faiss.Index:
        """The exact flat index: the main one for kind 'flat', else built on first use."""
        if self.config.kind == "flat":
            return self._index
        if self._flat is None:
            t0 = time.perf_counter()
            flat = faiss.IndexFlatIP(self.dim)
            flat.add(self._vectors)
            self._flat = flat
            self.build_seconds["exact_flat"] = round(time.perf_counter() - t0, 4)
        return self._flat

    def _set_threads(self) -> None:
        if self.config.threads > 0:
            faiss.omp_set_num_threads(self.config.threads)

    # --- properties ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of items."""
        return int(self._item_ids.size)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._vectors.shape[1])

    @property
    def advertisers(self) -> np.ndarray:
        """The distinct advertiser ids that own at least one item, sorted."""
        return self._adv_keys.copy()

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        c = self.config
        return (
            f"ItemIndex(n={self.size}, d={self.dim}, advertisers={self._adv_keys.size}, kind={c.kind!r}, "
            f"filter={c.filter!r}, metric={c.metric!r})"
        )

    def memory_bytes(self) -> dict[str, int]:
        """Approximate bytes held, by part: 'arrays' (vectors, ids, advertisers), 'main' (the main faiss
        index), 'partitions' and 'exact_flat' (0 when not built). Container slack is not counted."""
        arrays = sum(
            a.nbytes
            for a in (
                self._vectors,
                self._item_ids,
                self._adv,
                self._positions,
                self._adv_keys,
                self._adv_start,
                self._adv_end,
            )
        )
        return {
            "arrays": int(arrays),
            "main": _faiss_bytes(self._index),
            "partitions": sum(_faiss_bytes(p) for p in self._parts),
            "exact_flat": 0 if self._flat is None else _faiss_bytes(self._flat),
        }

    def n_allowed(self, advertiser_ids: IdArray) -> int:
        """How many items the given advertisers own (unknown ids count 0, duplicates once)."""
        starts, ends, _ = self._ranges(_int_array(advertiser_ids, "advertiser_ids"))
        return int((ends - starts).sum())

    # --- search -------------------------------------------------------------------------------

    def _queries(self, queries: Vectors) -> tuple[np.ndarray, bool]:
        """Queries as float32 [q, d] (normalised for 'cosine') and whether one 1-D query was given."""
        a = np.asarray(queries)
        single = a.ndim == 1
        q = _float_matrix(a[None, :] if single else a, "queries", self.dim)
        if self.config.metric == "cosine":
            q = q.copy()
            faiss.normalize_L2(q)
        return q, single

    def _params(
        self, sel: faiss.IDSelector | None, nprobe: int | None, ef_search: int | None, kind: str
    ) -> faiss.SearchParameters | None:
        args: dict[str, Any] = {} if sel is None else {"sel": sel}
        if kind == "ivf":
            nprobe = self.config.nprobe if nprobe is None else nprobe
            if nprobe < 1:
                raise ValueError(f"nprobe must be >= 1, got {nprobe}")
            return faiss.SearchParametersIVF(nprobe=min(int(nprobe), self._index.nlist), **args)
        if kind == "hnsw":
            ef = self.config.ef_search if ef_search is None else ef_search
            if ef < 1:
                raise ValueError(f"ef_search must be >= 1, got {ef}")
            return faiss.SearchParametersHNSW(efSearch=int(ef), **args)
        return faiss.SearchParameters(**args) if args else None

    def _to_items(self, scores: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions -> item ids; padding -> (-inf, -1)."""
        missing = pos < 0
        ids = np.where(missing, -1, self._item_ids[np.where(missing, 0, pos)])
        scores = np.where(missing, np.float32(-np.inf), scores).astype(np.float32, copy=False)
        return scores, ids.astype(np.int64, copy=False)

    def search(
        self,
        queries: Vectors,
        k: int,
        *,
        exact: bool = False,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unrestricted top-k over all items.

        Args:
            queries: float [q, d] (or one query [d]).
            k: results per query (>= 1); rows are padded with (-inf, -1) beyond the index size.
            exact: search the exact flat index instead of the main one.
            nprobe / ef_search: override the config's IVF / HNSW search setting for this call.

        Returns:
            (scores float32 [q, k], item_ids int64 [q, k]), best first; [k] each for a 1-D query.
        """
        k = _check_k(k)
        q, single = self._queries(queries)
        self._set_threads()
        index = self._exact_index() if exact else self._index
        params = self._params(None, nprobe, ef_search, "flat" if exact else self.config.kind)
        scores, pos = index.search(q, k, params=params)
        scores, ids = self._to_items(scores, pos)
        return (scores[0], ids[0]) if single else (scores, ids)

    def _ranges(self, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position ranges (starts, ends, advertiser rows) of the known advertisers in ``allowed``."""
        a = np.unique(allowed)  # sorted, distinct -> ranges come out sorted and disjoint
        j = np.searchsorted(self._adv_keys, a)
        known = j < self._adv_keys.size
        known[known] = self._adv_keys[j[known]] == a[known]
        j = j[known]
        return self._adv_start[j], self._adv_end[j], j

    def _selector(self, starts: np.ndarray, ends: np.ndarray) -> faiss.IDSelector:
        """An IDSelector for the positions in [starts[i], ends[i])."""
        if self.config.selector == "batch":
            return faiss.IDSelectorBatch(
                np.concatenate(
                    [self._positions[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
                )
            )
        return faiss.IDSelectorBitmap(ranges_bitmap(starts, ends, self.size))

    def _search_selected(
        self,
        index: faiss.Index,
        kind: str,
        q: np.ndarray,
        k: int,
        starts: np.ndarray,
        ends: np.ndarray,
        nprobe: int | None,
        ef_search: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        params = self._params(self._selector(starts, ends), nprobe, ef_search, kind)
        scores, pos = index.search(q, k, params=params)
        return scores[0], pos[0]

    def _search_partitions(self, q: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the given advertisers' partitions, merged."""
        all_scores, all_pos = [], []
        for j in rows.tolist():
            part = self._parts[j]
            scores, pos = part.search(q, min(k, part.ntotal))
            all_scores.append(scores[0])
            all_pos.append(pos[0] + self._adv_start[j])
        scores, pos = np.concatenate(all_scores), np.concatenate(all_pos)
        if scores.size > k:
            top = np.argpartition(-scores, k - 1)[:k]
            scores, pos = scores[top], pos[top]
        order = np.argsort(-scores, kind="stable")
        return scores[order], pos[order]

    def _guard(
        self, scores: np.ndarray, pos: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep only results inside the allowed ranges (order kept), padded to k with (-inf, -1)."""
        found = pos >= 0
        r = np.searchsorted(starts, pos, side="right") - 1
        inside = found & (r >= 0) & (pos < ends[np.clip(r, 0, None)])
        if (found & ~inside).any():
            bad = int((found & ~inside).sum())
            self.dropped += bad
            log.error("faiss returned %d item(s) outside the allowed advertisers; dropped", bad)
        out_s = np.full(k, -np.inf, dtype=np.float32)
        out_p = np.full(k, -1, dtype=np.int64)
        m = int(inside.sum())
        out_s[:m], out_p[:m] = scores[inside], pos[inside]
        return out_s, out_p

    def search_advertisers(
        self,
        queries: Vectors,
        advertiser_ids: Sequence[IdArray] | IdArray,
        k: int,
        *,
        exact: bool = False,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among the items of the given advertisers, per query.

        Args:
            queries: float [q, d], or one query [d].
            advertiser_ids: for [q, d] queries, q sequences of advertiser ids (one per query); for a
                1-D query, one sequence of advertiser ids. Unknown ids contribute nothing,
                duplicates count once; an empty (or wholly unknown) set gives an all-padding row.
            k: results per query (>= 1).
            exact: use the exact flat index with a selector (the reference for recall checks),
                whatever the config's kind and filter.
            nprobe / ef_search: override the config's IVF / HNSW search setting for this call.

        Returns:
            (scores float32 [q, k], item_ids int64 [q, k]), best first ([k] each for a 1-D query).
            Rows are padded with (-inf, -1) when fewer than k items qualify, and also when an
            approximate index (IVF within ``nprobe`` lists, HNSW within its ``efSearch`` beam) finds
            fewer than k allowed items. Never an item of another advertiser.
        """
        k = _check_k(k)
        q, single = self._queries(queries)
        if single:
            sets = [_int_array(advertiser_ids, "advertiser_ids")]
        else:
            if isinstance(advertiser_ids, np.ndarray) and advertiser_ids.ndim != 2:
                raise ValueError(
                    f"advertiser_ids must hold one id sequence per query, got shape {advertiser_ids.shape}"
                )
            if isinstance(advertiser_ids, str | bytes) or not isinstance(
                advertiser_ids, Sequence | np.ndarray
            ):
                raise ValueError("advertiser_ids must be a sequence with one id sequence per query")
            if len(advertiser_ids) != q.shape[0]:
                raise ValueError(f"advertiser_ids has {len(advertiser_ids)} entries for {q.shape[0]} queries")
            sets = [_int_array(a, f"advertiser_ids[{i}]") for i, a in enumerate(advertiser_ids)]
        self._set_threads()
        out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        out_p = np.full((q.shape[0], k), -1, dtype=np.int64)
        for i, allowed in enumerate(sets):
            starts, ends, rows = self._ranges(allowed)
            if rows.size == 0:
                continue
            qi = q[i : i + 1]
            if exact:
                s, p = self._search_selected(self._exact_index(), "flat", qi, k, starts, ends, None, None)
            elif self.config.filter == "partition":
                s, p = self._search_partitions(qi, k, rows)
            else:
                s, p = self._search_selected(
                    self._index, self.config.kind, qi, k, starts, ends, nprobe, ef_search
                )
            out_s[i], out_p[i] = self._guard(s, p, starts, ends, k)
        scores, ids = self._to_items(out_s, out_p)
        return (scores[0], ids[0]) if single else (scores, ids)

    # --- persistence --------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` (created): index.faiss (faiss.write_index of the main index),
        item_ids.npy / advertiser_ids.npy / vectors.npy (sorted by advertiser) and config.json.
        Partitions and the exact flat index are rebuilt from vectors.npy on load."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / "index.faiss"))
        np.save(folder / "item_ids.npy", self._item_ids)
        np.save(folder / "advertiser_ids.npy", self._adv)
        np.save(folder / "vectors.npy", self._vectors)
        meta = {"format": FORMAT_VERSION, "n": self.size, "d": self.dim, "config": asdict(self.config)}
        (folder / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ItemIndex:
        """An index written by :meth:`save`; searches give the same results as the saved one."""
        folder = Path(folder)
        meta = json.loads((folder / "config.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder}: unsupported index format {meta.get('format')!r}")
        cfg = IndexConfig(**meta["config"])
        items = np.load(folder / "item_ids.npy")
        advs = np.load(folder / "advertiser_ids.npy")
        vecs = np.ascontiguousarray(np.load(folder / "vectors.npy"), dtype=np.float32)
        index = faiss.read_index(str(folder / "index.faiss"))
        if (
            not (items.size == advs.size == vecs.shape[0] == index.ntotal == meta["n"])
            or index.d != vecs.shape[1]
        ):
            raise ValueError(f"{folder}: the index and the arrays disagree on size or dimension")
        self = cls.__new__(cls)
        self._setup(cfg, items.astype(np.int64), advs.astype(np.int64), vecs)
        self._set_threads()
        self._index = index
        self._build_partitions()
        return self


def _faiss_bytes(index: faiss.Index) -> int:
    """Bytes of a flat / IVF-flat / HNSW-flat index's codes, ids, centroids and graph (else its serialized size)."""
    if isinstance(index, faiss.IndexFlat):
        return int(index.ntotal * index.code_size)
    if isinstance(index, faiss.IndexIVFFlat):
        return int(index.ntotal * (index.code_size + 8) + _faiss_bytes(faiss.downcast_index(index.quantizer)))
    if isinstance(index, faiss.IndexHNSW):
        h = index.hnsw
        graph = h.neighbors.size() * 4 + h.levels.size() * 4 + h.offsets.size() * 8
        return int(graph + _faiss_bytes(faiss.downcast_index(index.storage)))
    return int(faiss.serialize_index(index).nbytes)


def ranges_bitmap(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """An IDSelectorBitmap bitmap (uint8 [ceil(n / 8)], bit i % 8 of byte i // 8) of the positions in
    the half-open ranges [starts[i], ends[i]); cost O(n / 8 + number of ranges)."""
    bm = np.zeros((n + 7) // 8, dtype=np.uint8)
    for s, e in zip(np.asarray(starts).tolist(), np.asarray(ends).tolist(), strict=True):
        if e <= s:
            continue
        last = e - 1
        sb, eb = s >> 3, last >> 3
        lo = (0xFF << (s & 7)) & 0xFF
        hi = 0xFF >> (7 - (last & 7))
        if sb == eb:
            bm[sb] |= lo & hi
        else:
            bm[sb] |= lo
            bm[eb] |= hi
            bm[sb + 1 : eb] = 0xFF
    return bm
