"""The two filter strategies of advertiser-restricted search, over contiguous position ranges.

:class:`retrieval.index.ItemIndex` keeps its items sorted by advertiser, so an advertiser's items
occupy one range ``[start, end)`` of index positions. This module holds the parts of a restricted
search that work on those ranges alone (no index state):

* :func:`allowed_ranges`: the position ranges of an advertiser set (unknown ids dropped);
* strategy ``selector``: :func:`make_selector` (a faiss ``IDSelectorBitmap`` over
  :func:`ranges_bitmap`, or an ``IDSelectorBatch`` hash set of the positions);
* strategy ``partition``: :func:`search_partitions` over the per-advertiser exact indexes of
  :func:`retrieval.faiss_build.build_partitions` (search the allowed partitions, merge their top-k);
* :func:`guard`: keep only results inside the allowed ranges, padded to ``k``.
"""

from __future__ import annotations

import faiss
import numpy as np


def allowed_ranges(
    keys: np.ndarray, starts: np.ndarray, ends: np.ndarray, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position ranges (starts, ends, advertiser rows) of the known advertisers in ``allowed``.

    Args:
        keys: the distinct advertiser ids of the index, sorted.
        starts: first position of each advertiser in ``keys``.
        ends: one past its last position.
        allowed: advertiser ids (unknown ids contribute nothing, duplicates count once).
    """
    a = np.unique(allowed)  # sorted, distinct -> ranges come out sorted and disjoint
    j = np.searchsorted(keys, a)
    known = j < keys.size
    known[known] = keys[j[known]] == a[known]
    j = j[known]
    return starts[j], ends[j], j


def make_selector(kind: str, positions: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> faiss.IDSelector:
    """An IDSelector for the positions in [starts[i], ends[i]) of an index of ``positions.size`` items.

    Args:
        kind: 'bitmap' (IDSelectorBitmap) | 'batch' (IDSelectorBatch).
        positions: 0..n-1 (int64), the faiss ids of the index.
        starts: first position of each allowed range.
        ends: one past the last position of each.
    """
    if kind == "batch":
        return faiss.IDSelectorBatch(
            np.concatenate([positions[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)])
        )
    return faiss.IDSelectorBitmap(ranges_bitmap(starts, ends, positions.size))


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


def search_partitions(
    parts: list[faiss.Index], part_starts: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of one query ``q`` [1, d] over the partitions ``rows``, merged; (scores, positions).

    Args:
        parts: the partitions of :func:`retrieval.faiss_build.build_partitions`.
        part_starts: the first position of each partition.
        q: the query.
        k: results wanted (fewer when the partitions hold fewer items).
        rows: which partitions to search.
    """
    all_scores, all_pos = [], []
    for j in rows.tolist():
        part = parts[j]
        scores, pos = part.search(q, min(k, part.ntotal))
        all_scores.append(scores[0])
        all_pos.append(pos[0] + part_starts[j])
    scores, pos = np.concatenate(all_scores), np.concatenate(all_pos)
    if scores.size > k:
        top = np.argpartition(-scores, k - 1)[:k]
        scores, pos = scores[top], pos[top]
    order = np.argsort(-scores, kind="stable")
    return scores[order], pos[order]


def guard(
    scores: np.ndarray, pos: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep only results inside the allowed ranges (order kept), padded to k with (-inf, -1).

    Returns:
        (scores float32 [k], positions int64 [k], how many found results lay outside and were dropped).
    """
    found = pos >= 0
    r = np.searchsorted(starts, pos, side="right") - 1
    inside = found & (r >= 0) & (pos < ends[np.clip(r, 0, None)])
    bad = int((found & ~inside).sum())
    out_s = np.full(k, -np.inf, dtype=np.float32)
    out_p = np.full(k, -1, dtype=np.int64)
    m = int(inside.sum())
    out_s[:m], out_p[:m] = scores[inside], pos[inside]
    return out_s, out_p, bad
