"""The serving stack of the simulated A/B test: model, item index, candidate generators, rankers.

:class:`Serving` loads the two-tower model of one objective (:func:`retrieval.model.load`), indexes
its item vectors (:class:`retrieval.index.ItemIndex`), builds the generators (:mod:`retrieval.generators`:
two-tower, popularity over the last 28 days, and the advertiser-filtered two-tower twice: restricted to the
heuristic control's advertisers and to the LLM's, each list read from its own Feast service) and
loads the ranking models that score a user's candidates through Feast online features
(:class:`ranking.serve.OnlineRanker`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np

from retrieval import data as rdata
from retrieval.blend import Candidate
from retrieval.config import RetrievalConfig
from retrieval.generators import LLMGenerator, PopularityGenerator, TwoTowerGenerator, predicted_advertisers
from retrieval.index import ItemIndex
from retrieval.model import load


class Serving:
    """Everything the A/B test serves with: models, index, generators, online features, ranker."""

    def __init__(self, cfg: RetrievalConfig, objective: str, now: datetime) -> None:
        from ranking.serve import OnlineRanker

        self.cfg, self.now = cfg, now
        model = load(replace(cfg, objective=objective).folder())
        self.items = model.items
        item_ids, vecs = model.embed_items()
        adv = dict(
            zip(self.items["item_id"].astype(int), self.items["advertiser_id"].astype(int), strict=True)
        )
        index = ItemIndex(item_ids, np.array([adv[int(i)] for i in item_ids]), vecs, cfg.index)
        self.two_tower = TwoTowerGenerator(index, adv)
        self.llm = LLMGenerator(index, adv)
        self.heuristic = LLMGenerator(index, adv, name="heuristic")  # the same code over the control's list
        counts = rdata.interactions(cfg.data, "impression", now.date() - timedelta(days=28), now.date())
        conv = rdata.interactions(cfg.data, "conversion", now.date() - timedelta(days=28), now.date())
        pop = conv["item_id"].value_counts().astype(float) + 1e-3 * counts["item_id"].value_counts()
        self.popularity = PopularityGenerator.from_counts(self.items, pop)
        self.prices = dict(
            zip(self.items["item_id"].astype(int), self.items["price"].astype(float), strict=True)
        )
        self.model = model
        self.rankers = []
        if cfg.ranking_models is not None:
            for task in ("ctcvr", "vtcvr"):
                self.rankers.append(
                    OnlineRanker.load(cfg.ranking_models, task, cfg.ranking_library, "llm", cfg.store)
                )

    def candidates(self, users: list[int]) -> dict[int, dict[str, list[Candidate]]]:
        """Each user's candidates from every generator at its quota (the filtered ones, heuristic and LLM:
        the largest swept quota)."""
        frame = rdata.online_user_features(self.cfg.store, users)
        vecs = self.model.embed_users(frame)
        preds = predicted_advertisers(self.cfg.store, users)
        heur = predicted_advertisers(self.cfg.store, users, "heuristic_predictions_online")
        q = self.cfg.quotas
        llm_k = max([q.get("llm", 0), *self.cfg.sweep_llm_quotas])
        out = {}
        for u, v in zip(users, vecs, strict=True):
            # ask each generator for more than its quota so that duplicates can be replaced in the blend
            out[u] = {
                "two_tower": self.two_tower.retrieve(v, 2 * q.get("two_tower", 0)),
                "popularity": self.popularity.retrieve(2 * q.get("popularity", 0)),
                "heuristic": self.heuristic.retrieve(v, heur.get(u, []), 2 * llm_k),
                "llm": self.llm.retrieve(v, preds.get(u, []), 2 * llm_k),
            }
        return out

    def scores(self, user: int, advertisers: list[int]) -> dict[int, float]:
        """Expected conversions per impression of each advertiser's ad (sum of the rankers' P)."""
        distinct = list(dict.fromkeys(advertisers))
        if not self.rankers or not distinct:
            return {}
        total = np.zeros(len(distinct))
        for r in self.rankers:
            total += r.score(user, distinct, now=self.now)
        return dict(zip(distinct, total.tolist(), strict=True))
