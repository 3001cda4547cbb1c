"""Candidate generators: the LLM generator (paper 3.6.1) and the "existing" channels it complements.

* :class:`LLMGenerator`: the two-tower user vector searches only items of the advertisers the LLM
  predicted for the user (read from Feast online features, ``llm_predictions_online``); the same class,
  named ``heuristic``, over the heuristic control's list (``heuristic_predictions_online``) is the control
  arm's generator (issue 18).
* :class:`TwoTowerGenerator`: the same model, unrestricted.
* :class:`PopularityGenerator`: the catalogue's most converted / shown items, the same for everyone.

Each returns :class:`retrieval.blend.Candidate` lists, best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adprior import store
from adprior.store import StoreConfig
from retrieval.blend import Candidate
from retrieval.index import ItemIndex


def _candidates(
    index_adv: dict[int, int], scores: np.ndarray, ids: np.ndarray, source: str
) -> list[Candidate]:
    return [
        Candidate(int(i), index_adv[int(i)], float(s), source)
        for s, i in zip(scores, ids, strict=True)
        if int(i) >= 0
    ]


@dataclass
class TwoTowerGenerator:
    """Top items by two-tower score over the whole catalogue."""

    index: ItemIndex  # item vectors
    item_advertiser: dict[int, int]  # item id -> advertiser id
    name: str = "two_tower"

    def retrieve(self, user_vector: np.ndarray, k: int) -> list[Candidate]:
        if k <= 0:
            return []
        scores, ids = self.index.search(user_vector.astype(np.float32), k)
        return _candidates(self.item_advertiser, scores, ids, self.name)


@dataclass
class LLMGenerator:
    """Top items by two-tower score among the items of the user's predicted advertisers only (the LLM's, or
    the heuristic control's when named 'heuristic')."""

    index: ItemIndex  # item vectors
    item_advertiser: dict[int, int]  # item id -> advertiser id
    name: str = "llm"

    def retrieve(self, user_vector: np.ndarray, advertisers: Sequence[int], k: int) -> list[Candidate]:
        if k <= 0 or not advertisers:
            return []
        scores, ids = self.index.search_advertisers(
            user_vector.astype(np.float32), [int(a) for a in advertisers], k
        )
        return _candidates(self.item_advertiser, scores, ids, self.name)


@dataclass
class PopularityGenerator:
    """The same most popular items for every user."""

    ranked: list[Candidate]  # the catalogue's items, most popular first
    name: str = "popularity"

    @classmethod
    def from_counts(cls, items: pd.DataFrame, counts: pd.Series) -> PopularityGenerator:
        """Rank ``items`` (item_id, advertiser_id) by ``counts`` (indexed by item id; ties: item id)."""
        c = items[["item_id", "advertiser_id"]].copy()
        c["n"] = c["item_id"].map(counts).fillna(0.0).astype(float)
        c = c.sort_values(["n", "item_id"], ascending=[False, True])
        return cls(
            [
                Candidate(int(i), int(a), float(n), "popularity")
                for i, a, n in zip(c["item_id"], c["advertiser_id"], c["n"], strict=True)
            ]
        )

    def retrieve(self, k: int) -> list[Candidate]:
        return self.ranked[: max(k, 0)]


def predicted_advertisers(
    cfg: StoreConfig, user_ids: Sequence[int], service: str = "llm_predictions_online"
) -> dict[int, list[int]]:
    """Each user's predicted advertiser ids from the online store (empty list: no prediction): the LLM's,
    or with ``service='heuristic_predictions_online'`` the heuristic control's.

    Raises:
        StoreUnavailable: the online store cannot be reached.
    """
    rows = store.lookup(cfg, [int(u) for u in user_ids], service)
    return {int(r["user_id"]): [int(a) for a in (r.get("advertiser_ids") or [])] for r in rows}
