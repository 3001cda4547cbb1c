"""Building the faiss indexes of :class:`retrieval.index.ItemIndex`, and counting their memory.

Every index is an inner-product index over the vectors as given (already L2-normalised for the
metric 'cosine'), with plain ``add``: faiss ids are the positions 0..n-1.

* :func:`build_main`: the main index of ``IndexConfig.kind`` (exact flat, IVF-flat or HNSW-flat);
* :func:`build_flat`: the exact flat index (the reference of ``exact=True`` searches);
* :func:`build_partitions`: one exact flat index per advertiser range (filter 'partition');
* :func:`faiss_bytes`: the bytes one such index holds.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from retrieval.index_config import IndexConfig


def default_nlist(n: int) -> int:
    """IVF inverted lists for ``n`` items: round(sqrt(n)), at most n // 39 (>= 39 train points/list), >= 1."""
    return max(1, min(round(math.sqrt(n)), n // 39))


def build_main(vectors: np.ndarray, cfg: IndexConfig) -> faiss.Index:
    """The main index of ``cfg.kind`` over ``vectors`` (float32 [n, d]); IVF is trained on them first."""
    d = vectors.shape[1]
    if cfg.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif cfg.kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        nlist = cfg.nlist or default_nlist(vectors.shape[0])
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = cfg.seed
        index.train(vectors)
        index.nprobe = cfg.nprobe
    else:
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.rng = faiss.RandomGenerator(cfg.seed)
        index.hnsw.efConstruction = cfg.ef_construction
        index.hnsw.efSearch = cfg.ef_search
    index.add(vectors)  # faiss ids = positions 0..n-1
    return index


def build_flat(vectors: np.ndarray) -> faiss.Index:
    """An exact IndexFlatIP over ``vectors``."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat


def build_partitions(vectors: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[faiss.Index]:
    """One exact IndexFlatIP per advertiser range (partition id j = position start + j)."""
    parts: list[faiss.Index] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        part = faiss.IndexFlatIP(vectors.shape[1])
        part.add(vectors[s:e])
        parts.append(part)
    return parts


def faiss_bytes(index: faiss.Index) -> int:
    """Bytes of a flat / IVF-flat / HNSW-flat index's codes, ids, centroids and graph (else its serialized size)."""
    if isinstance(index, faiss.IndexFlat):
        return int(index.ntotal * index.code_size)
    if isinstance(index, faiss.IndexIVFFlat):
        return int(index.ntotal * (index.code_size + 8) + faiss_bytes(faiss.downcast_index(index.quantizer)))
    if isinstance(index, faiss.IndexHNSW):
        h = index.hnsw
        graph = h.neighbors.size() * 4 + h.levels.size() * 4 + h.offsets.size() * 8
        return int(graph + faiss_bytes(faiss.downcast_index(index.storage)))
    return int(faiss.serialize_index(index).nbytes)
