"""Synthetic items and queries of the retrieval benchmark (bench/retrieval.py), seeded per size.

Item and query vectors come from one Gaussian mixture (unit-norm centres + noise, L2-normalised);
advertisers own items with a Zipf-like skew, and every query gets a set of allowed advertisers drawn
with the same skew. :func:`make_data` returns them as a dict the benchmark's measuring code reads.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np


def mixture(
    n: int, centers: np.ndarray, spread: float, rng: np.random.Generator, chunk: int = 200_000
) -> np.ndarray:
    """``n`` L2-normalised float32 points: a random centre + spread * N(0, I/d) each (built in chunks)."""
    d = centers.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        x = centers[rng.integers(0, len(centers), hi - lo)]
        x += (spread / np.sqrt(d)) * rng.standard_normal((hi - lo, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[lo:hi] = x
    return out


def make_data(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Items (ids, advertisers, vectors), queries and their allowed advertiser sets for one size."""
    rng = np.random.default_rng([args.seed, n])
    centers = rng.standard_normal((args.clusters, args.dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, args.advertisers + 1) ** args.zipf
    weights /= weights.sum()
    adv_of_rank = rng.permutation(args.advertisers).astype(np.int64) * 7 + 1000  # non-contiguous ids
    advs = adv_of_rank[rng.choice(args.advertisers, size=n, p=weights)]
    item_ids = rng.permutation(n).astype(np.int64)
    vectors = mixture(n, centers, args.spread, rng)
    nq = args.warmup + args.queries
    queries = mixture(nq, centers, args.spread, rng)
    sets = [
        adv_of_rank[rng.choice(args.advertisers, size=args.allowed, replace=False, p=weights)]
        for _ in range(nq)
    ]
    counts = np.bincount(np.searchsorted(np.sort(adv_of_rank), advs), minlength=args.advertisers)
    adv_sorted = np.sort(adv_of_rank)
    count_of = dict(zip(adv_sorted.tolist(), counts.tolist(), strict=True))
    allowed_items = np.array([sum(count_of[a] for a in s.tolist()) for s in sets[args.warmup :]])
    adv_by_item = np.empty(n, dtype=np.int64)
    adv_by_item[item_ids] = advs
    return {
        "item_ids": item_ids,
        "advs": advs,
        "vectors": vectors,
        "adv_by_item": adv_by_item,
        "warm": (queries[: args.warmup], sets[: args.warmup]),
        "timed": (queries[args.warmup :], sets[args.warmup :]),
        "stats": {
            "items": n,
            "advertisers_with_items": int((counts > 0).sum()),
            "largest_advertiser_items": int(counts.max()),
            "median_advertiser_items": float(np.median(counts[counts > 0])),
            "allowed_items_mean": round(float(allowed_items.mean()), 1),
            "allowed_items_p10": int(np.percentile(allowed_items, 10)),
            "allowed_items_p90": int(np.percentile(allowed_items, 90)),
            "allowed_share_mean": round(float(allowed_items.mean()) / n, 4),
        },
    }
