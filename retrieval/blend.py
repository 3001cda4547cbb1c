"""Blending candidate generators under L0 quotas (paper 3.6.1: the LLM generator is one more channel).

Each generator returns its candidates best first. :func:`blend` walks the generators in priority
order; each adds its candidates in rank order, skipping items already taken by an earlier
generator, until it has added ``quota`` new items or runs out. So every generator gets its quota of
*distinct* items when it has enough, a duplicate is credited to the first generator that claimed
it, and the merged list never holds an item twice.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """One retrieved ad."""

    item_id: int  # the ad
    advertiser_id: int  # its advertiser
    score: float  # the generator's score (higher is better; not comparable across generators)
    source: str  # the generator that retrieved it (after blending: the first one that claimed it)


def blend(candidates: Mapping[str, Sequence[Candidate]], quotas: Mapping[str, int]) -> list[Candidate]:
    """Merge generators' candidates under quotas, de-duplicated by item.

    Args:
        candidates: generator name -> its candidates, best first; the mapping's order is the
            priority order (an item retrieved by two generators is credited to the earlier one).
        quotas: generator name -> most distinct items it may add (missing name: 0).

    Returns:
        The merged candidates, generator by generator in priority order, each in its own rank order.

    Raises:
        ValueError: a negative quota.
    """
    for name, q in quotas.items():
        if q < 0:
            raise ValueError(f"quota of generator {name!r} is negative ({q})")
    seen: set[int] = set()
    out: list[Candidate] = []
    for name, cands in candidates.items():
        quota = quotas.get(name, 0)
        added = 0
        for c in cands:
            if added >= quota:
                break
            if c.item_id in seen:
                continue
            seen.add(c.item_id)
            out.append(Candidate(c.item_id, c.advertiser_id, c.score, name))
            added += 1
    return out


def advertiser_diversity(cands: Sequence[Candidate]) -> dict[str, float]:
    """Distinct advertisers and the exponential of the Shannon entropy of the advertiser shares."""
    counts = Counter(c.advertiser_id for c in cands)
    n = sum(counts.values())
    if n == 0:
        return {"distinct_advertisers": 0.0, "effective_advertisers": 0.0}
    entropy = -sum((k / n) * math.log(k / n) for k in counts.values())
    return {"distinct_advertisers": float(len(counts)), "effective_advertisers": math.exp(entropy)}
