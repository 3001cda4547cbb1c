"""Settings of the faiss item index (:class:`retrieval.index.ItemIndex`): kind, metric, filter, threads.

One dataclass, checked on construction; the retrieval stage's own configuration
(:class:`retrieval.config.RetrievalConfig`) holds one as its ``index`` section.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("flat", "ivf", "hnsw")
FILTERS = ("selector", "partition")
SELECTORS = ("bitmap", "batch")
METRICS = ("ip", "cosine")


@dataclass
class IndexConfig:
    """How an :class:`retrieval.index.ItemIndex` is built and searched."""

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
