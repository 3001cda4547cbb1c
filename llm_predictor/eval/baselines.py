"""Non-LLM baselines over the compiled examples, and Recall@K.

Every baseline returns, per example row, a ranked list of advertiser IDs. They are fitted on the
train split only (no eval user's label is ever seen) and scored on whatever rows they are given:

* ``popularity``: advertisers by the number of train users who converted with them in the past.
* ``history``: the user's own past-conversion advertisers, newest first (recency), then
  popularity.
* ``cooccurrence``: next-advertiser transitions learned on train users (past advertiser -> label),
  weighted by the recency rank of the past advertiser, then history, then popularity.
* ``heuristic``: the best non-LLM list, the control of the consumers (issue 18): the user's history
  (newest first), then the user's top brands that name an advertiser, then co-occurrence, then
  popularity. Brand names map to ids through the advertisers table given to :meth:`Baselines.fit`,
  the train rows (past advertisers and labels) and the scored row's own past advertisers, never
  through a scored row's label.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


def name_key(name: object) -> str:
    """How brand and advertiser names are compared: stripped and case-folded."""
    return str(name).strip().casefold()


def _cells(value: Any) -> list[Any]:
    """A list cell as a plain list (None / NaN -> [])."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    return list(value)


def name_index(rows: pd.DataFrame | None = None, advertisers: pd.DataFrame | None = None) -> dict[str, int]:
    """``name_key(name) -> advertiser id`` from an advertisers table (name and aliases) and from rows'
    past advertisers (``active_advertisers`` / ``active_advertiser_ids``) and label name / id (pass
    fitting rows only). The table wins over the rows; the first id seen for a name wins."""
    out: dict[str, int] = {}
    if advertisers is not None and len(advertisers):
        adv = advertisers
        if "is_active" in adv.columns:  # an inactive advertiser can be no label and no pool name
            adv = adv[adv["is_active"].fillna(True).astype(bool)]
        aliases = adv["aliases"] if "aliases" in adv.columns else pd.Series([None] * len(adv))
        for a, n in zip(adv["advertiser_id"], adv["name"], strict=True):  # names before any alias
            if n is not None and n == n:
                out.setdefault(name_key(n), int(a))
        for a, al in zip(adv["advertiser_id"], aliases, strict=True):
            for nm in _cells(al):
                out.setdefault(name_key(nm), int(a))
    if rows is not None and len(rows):
        for names, ids in zip(rows["active_advertisers"], rows["active_advertiser_ids"], strict=True):
            for n, a in zip(_cells(names), _cells(ids), strict=False):
                out.setdefault(name_key(n), int(a))
        lab = rows[rows["label_advertiser_id"].notna() & rows["label_advertiser_name"].notna()]
        for a, n in zip(lab["label_advertiser_id"], lab["label_advertiser_name"], strict=True):
            out.setdefault(name_key(n), int(a))
    return out


class Baselines:
    """Fit on train rows, predict ranked advertiser IDs for any rows."""

    def __init__(self, k: int = 20) -> None:
        self.k = k
        self.popular: list[int] = []
        self.trans: dict[int, Counter[int]] = {}
        self.names: dict[str, int] = {}  # name_key(brand or advertiser name) -> advertiser id

    def fit(self, train: pd.DataFrame, advertisers: pd.DataFrame | None = None) -> Baselines:
        """Popularity and transitions from ``train`` (labelled rows give the transitions); the brand ->
        advertiser map of :meth:`heuristic` from ``advertisers`` (advertiser_id, name[, aliases]) and
        ``train``."""
        self.names = name_index(train, advertisers)
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

    def cooccurring(self, ids: Iterable[int]) -> list[int]:
        """Advertisers that followed the user's past advertisers in train, best first."""
        score: Counter[int] = Counter()
        for rank, a in enumerate(ids):
            c = self.trans.get(int(a))
            if not c:
                continue
            tot = sum(c.values())
            for b, n in c.items():
                score[b] += (n / tot) / (1.0 + rank)
        return [b for b, _ in score.most_common()]

    def cooccurrence(self, rows: pd.DataFrame) -> list[list[int]]:
        return [
            _fill(self.cooccurring(ids), [*(int(a) for a in ids), *self.popular], self.k)
            for ids in rows["active_advertiser_ids"]
        ]

    def brands(self, row: Mapping[str, Any]) -> list[int]:
        """The row's ``top_brands`` that name an advertiser, as ids in brand order (unknown names skipped).

        Names resolve through the fitted map and the row's own past advertisers, never its label."""
        own = {
            name_key(n): int(a)
            for n, a in zip(
                _cells(row.get("active_advertisers")), _cells(row.get("active_advertiser_ids")), strict=False
            )
        }
        out = []
        for b in _cells(row.get("top_brands")):
            a = self.names.get(name_key(b), own.get(name_key(b)))
            if a is not None:
                out.append(a)
        return out

    def heuristic(self, rows: pd.DataFrame) -> list[list[int]]:
        """History (newest first), then top brands, then co-occurrence, then popularity; top k, distinct."""
        out = []
        for row in rows.to_dict("records"):
            ids = [int(a) for a in _cells(row.get("active_advertiser_ids"))]
            head = [*ids, *self.brands(row), *self.cooccurring(ids)]
            out.append(_fill(head, self.popular, self.k))
        return out
