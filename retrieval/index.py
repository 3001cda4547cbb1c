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

The faiss indexes are built (and their memory counted) by :mod:`retrieval.faiss_build`, the range
arithmetic of both filter strategies (selectors, partition search, the guard) lives in
:mod:`retrieval.filters`, the settings in :mod:`retrieval.index_config` and the checks of the
arguments in :mod:`retrieval.index_checks`; this module holds the index itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from retrieval.faiss_build import build_flat, build_main, build_partitions, faiss_bytes
from retrieval.filters import allowed_ranges, guard, make_selector, search_partitions
from retrieval.index_checks import IdArray, Vectors, advertiser_sets, check_k, float_matrix, int_array
from retrieval.index_config import IndexConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

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
        items = int_array(item_ids, "item_ids")
        advs = int_array(advertiser_ids, "advertiser_ids")
        if items.size == 0:
            raise ValueError("item_ids is empty: an index needs at least one item")
        if advs.shape != items.shape:
            raise ValueError(f"advertiser_ids has length {advs.size} but item_ids has length {items.size}")
        vecs = float_matrix(vectors, "vectors")
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
        self._index = build_main(self._vectors, cfg)
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

    def _build_partitions(self) -> None:
        if self.config.filter != "partition":
            return
        t0 = time.perf_counter()
        self._parts = build_partitions(self._vectors, self._adv_start, self._adv_end)
        self.build_seconds["partitions"] = round(time.perf_counter() - t0, 4)

    def _exact_index(self) -> faiss.Index:
        """The exact flat index: the main one for kind 'flat', else built on first use."""
        if self.config.kind == "flat":
            return self._index
        if self._flat is None:
            t0 = time.perf_counter()
            self._flat = build_flat(self._vectors)
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
    def nlist(self) -> int | None:
        """Inverted lists of the main index (kind 'ivf'), None for the other kinds."""
        return int(self._index.nlist) if self.config.kind == "ivf" else None

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
            "main": faiss_bytes(self._index),
            "partitions": sum(faiss_bytes(p) for p in self._parts),
            "exact_flat": 0 if self._flat is None else faiss_bytes(self._flat),
        }

    def n_allowed(self, advertiser_ids: IdArray) -> int:
        """How many items the given advertisers own (unknown ids count 0, duplicates once)."""
        starts, ends, _ = self._ranges(int_array(advertiser_ids, "advertiser_ids"))
        return int((ends - starts).sum())

    # --- search -------------------------------------------------------------------------------

    def _queries(self, queries: Vectors) -> tuple[np.ndarray, bool]:
        """Queries as float32 [q, d] (normalised for 'cosine') and whether one 1-D query was given."""
        a = np.asarray(queries)
        single = a.ndim == 1
        q = float_matrix(a[None, :] if single else a, "queries", self.dim)
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
        k = check_k(k)
        q, single = self._queries(queries)
        self._set_threads()
        index = self._exact_index() if exact else self._index
        params = self._params(None, nprobe, ef_search, "flat" if exact else self.config.kind)
        scores, pos = index.search(q, k, params=params)
        scores, ids = self._to_items(scores, pos)
        return (scores[0], ids[0]) if single else (scores, ids)

    def _ranges(self, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position ranges (starts, ends, advertiser rows) of the known advertisers in ``allowed``."""
        return allowed_ranges(self._adv_keys, self._adv_start, self._adv_end, allowed)

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
        sel = make_selector(self.config.selector, self._positions, starts, ends)
        scores, pos = index.search(q, k, params=self._params(sel, nprobe, ef_search, kind))
        return scores[0], pos[0]

    def _guard(
        self, scores: np.ndarray, pos: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep only results inside the allowed ranges (order kept), padded to k with (-inf, -1)."""
        out_s, out_p, bad = guard(scores, pos, starts, ends, k)
        if bad:
            self.dropped += bad
            log.error("faiss returned %d item(s) outside the allowed advertisers; dropped", bad)
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
        k = check_k(k)
        q, single = self._queries(queries)
        sets = advertiser_sets(advertiser_ids, None if single else q.shape[0])
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
                s, p = search_partitions(self._parts, self._adv_start, qi, k, rows)
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
