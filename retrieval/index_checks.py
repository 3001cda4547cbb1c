"""Checks of what an :class:`retrieval.index.ItemIndex` is given: id arrays, vectors, k, advertiser sets.

Every check returns the value in the form the index works with (int64 ids, C-contiguous finite
float32 matrices, an int ``k``, one id array per query) or raises ValueError naming the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Vectors = np.ndarray | Sequence[Sequence[float]]
IdArray = np.ndarray | Sequence[int]


def int_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D int64 array; ValueError naming ``name`` otherwise."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def float_matrix(x: Any, name: str, d: int | None = None) -> np.ndarray:
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


def check_k(k: Any) -> int:
    """``k`` as an int when it is a positive integer (bools excluded); ValueError otherwise."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def advertiser_sets(advertiser_ids: Sequence[IdArray] | IdArray, n_queries: int | None) -> list[np.ndarray]:
    """The advertiser-id arrays of a restricted search, one per query.

    Args:
        advertiser_ids: one id sequence (``n_queries`` None: a single 1-D query) or one id sequence
            per query.
        n_queries: the number of queries of a [q, d] search; None for one 1-D query.
    """
    if n_queries is None:
        return [int_array(advertiser_ids, "advertiser_ids")]
    if isinstance(advertiser_ids, np.ndarray) and advertiser_ids.ndim != 2:
        raise ValueError(
            f"advertiser_ids must hold one id sequence per query, got shape {advertiser_ids.shape}"
        )
    if isinstance(advertiser_ids, str | bytes) or not isinstance(advertiser_ids, Sequence | np.ndarray):
        raise ValueError("advertiser_ids must be a sequence with one id sequence per query")
    if len(advertiser_ids) != n_queries:
        raise ValueError(f"advertiser_ids has {len(advertiser_ids)} entries for {n_queries} queries")
    return [int_array(a, f"advertiser_ids[{i}]") for i, a in enumerate(advertiser_ids)]
