"""Online scoring: a user and candidate ads -> Feast online features -> the trained model's scores.

The same :class:`ranking.models.FeatureSpec` turns the online frame into the model matrix as the
offline path does, so a candidate with the same feature values gets the same score. Features are
fetched once per distinct candidate advertiser (the LLM and behaviour features depend on the
advertiser, not the item) and broadcast back to the ads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from adprior import store
from adprior.store import StoreConfig
from ranking.config import SERVICES
from ranking.models import SavedModel
from ranking.train import model_dir


def online_features(cfg: StoreConfig, user_id: int, advertiser_ids: list[int], service: str) -> pd.DataFrame:
    """Online features of (user, candidate advertiser) pairs, one row per advertiser id, in order.

    Raises:
        StoreUnavailable: the online store cannot be reached.
    """
    fs = store.get_store(cfg)
    rows = [{"user_id": int(user_id), "advertiser_id": int(a), "candidate_advertiser_id": int(a)}
            for a in advertiser_ids]
    store.check_online(cfg, "online ranking features")
    with store._translate_outage(cfg, "online ranking features"):
        resp = fs.get_online_features(features=fs.get_feature_service(service), entity_rows=rows)
        return resp.to_df()


@dataclass
class OnlineRanker:
    """Scores candidate ads of one user with a trained model and Feast online features."""

    model: SavedModel  # the trained model and its feature spec
    store: StoreConfig  # where the online features live
    service: str  # the feature service the model was trained on

    @classmethod
    def load(cls, out: Path, task: str, library: str, feature_set: str, cfg: StoreConfig) -> OnlineRanker:
        """The model trained by ``adprior ranking train`` under ``out`` for (task, library, feature set)."""
        if feature_set not in SERVICES:
            raise ValueError(f"unknown feature set {feature_set!r}; expected one of {sorted(SERVICES)}")
        return cls(SavedModel.load(model_dir(out, task, library, feature_set)), cfg, SERVICES[feature_set])

    def score(self, user_id: int, candidate_advertisers: list[int], now: datetime | None = None) -> np.ndarray:
        """P(conversion) of each candidate ad, given by its advertiser id (repeats allowed).

        Args:
            user_id: the user.
            candidate_advertisers: advertiser id of each candidate ad.
            now: request time (ages of timestamp features); default: the current time.
        """
        if not candidate_advertisers:
            return np.zeros(0)
        distinct = list(dict.fromkeys(int(a) for a in candidate_advertisers))
        frame = online_features(self.store, user_id, distinct, self.service)
        probs = self.model.predict(frame, pd.Timestamp(now or datetime.now(UTC)))
        by_adv = dict(zip(distinct, probs, strict=True))
        return np.array([by_adv[int(a)] for a in candidate_advertisers])
