"""Non-LLM baselines over the compiled examples, and Recall@K.

Every baseline returns, per example row, a ranked list of advertiser IDs. They are fitted on the
train split only (no eval user's label is ever seen) and scored on whatever rows they are given:

* ``popularity``: advertisers by the number of train users who converted with them in the past.
* ``history``: the user's own past-conversion advertisers, newest first (recency), then
  popularity.
* ``cooccurrence``: next-advertiser transitions learned on train users (past advertiser -> label),
  weighted by the recency rank of the past advertiser, then history, then popularity.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import pandas as pd


def hits_at_k(ranked: Sequence[Sequence[int]], labels: Sequence[int | None], k: int) -> list[bool | None]:
    """Per row: is the label among the first k *de-duplicated* predictions (None for an unlabelled row)."""
    out: list[bool | None] = []
    for preds, y in zip(ranked, labels, strict=True):
        if y is None or pd.isna(y):
            out.append(None)
            continue
        seen: list[int] = []
        for p in preds:
            if p not in seen:
                seen.append(p)
            if len(seen) == k:
                break
        out.append(int(y) in seen)
    return out


def recall_at_k(ranked: Sequence[Sequence[int]], labels: Sequence[int | None], k: int) -> float:
    """Share of labelled rows whose label is among the first k *de-duplicated* predictions."""
    hits = [h for h in hits_at_k(ranked, labels, k) if h is not None]
    return sum(hits) / len(hits) if hits else float("nan")


def _fill(head: Iterable[int], tail: Sequence[int], k: int) -> list[int]:
    out: list[int] = []
    seen: set[int] = set()
    for a in [*head, *tail]:
        if a not in seen:
            seen.add(a)
            out.append(a)
            if len(out) == k:
                break
    return out


class Baselines:
    """Fit on train rows, predict ranked advertiser IDs for any rows."""

    def __init__(self, k: int = 20) -> None:
        self.k = k
        self.popular: list[int] = []
        self.trans: dict[int, Counter[int]] = {}

    def fit(self, train: pd.DataFrame) -> Baselines:
        pop: Counter[int] = Counter()
        for ids in train["active_advertiser_ids"]:
            pop.update(int(a) for a in ids)
        lab = train[train["label_advertiser_id"].notna()]
        pop.update(int(a) for a in lab["label_advertiser_id"])
        self.popular = [a for a, _ in pop.most_common()]
        trans: dict[int, Counter[int]] = defaultdict(Counter)
        for ids, y in zip(lab["active_advertiser_ids"], lab["label_advertiser_id"], strict=True):
            for a in ids:
                trans[int(a)][int(y)] += 1
        self.trans = dict(trans)
        return self

    def popularity(self, rows: pd.DataFrame) -> list[list[int]]:
        top = self.popular[: self.k]
        return [list(top) for _ in range(len(rows))]

    def history(self, rows: pd.DataFrame) -> list[list[int]]:
        return [_fill((int(a) for a in ids), self.popular, self.k) for ids in rows["active_advertiser_ids"]]

    def cooccurrence(self, rows: pd.DataFrame) -> list[list[int]]:
        out = []
        for ids in rows["active_advertiser_ids"]:
            score: Counter[float] = Counter()
            for rank, a in enumerate(ids):
                c = self.trans.get(int(a))
                if not c:
                    continue
                tot = sum(c.values())
                for b, n in c.items():
                    score[b] += (n / tot) / (1.0 + rank)
            head = [b for b, _ in score.most_common()]
            out.append(_fill(head, [*(int(a) for a in ids), *self.popular], self.k))
        return out
