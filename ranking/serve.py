"""Online scoring: a user and candidate ads -> Feast online features -> the trained model's scores.

The same :class:`ranking.models.FeatureSpec` turns the online frame into the model matrix as the
offline path does, so a candidate with the same feature values gets the same score. Features are
fetched once per distinct candidate advertiser (the LLM and behaviour features depend on the
advertiser, not the item) and broadcast back to the ads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adprior import store
from adprior.store import StoreConfig
from adprior.store.config import translate_outage
from ranking.config import SERVICES
from ranking.models import SavedModel
from ranking.train import model_dir


def online_features(
    cfg: StoreConfig, user_id: int, advertiser_ids: list[int], service: str, fs: Any = None
) -> pd.DataFrame:
    """Online features of (user, candidate advertiser) pairs, one row per advertiser id, in order.

    Args:
        cfg: the store.
        user_id: the user.
        advertiser_ids: candidate advertisers.
        service: feature service name.
        fs: a ``feast.FeatureStore`` to reuse (building one costs ~10 ms and empties Feast's
            registry cache); None builds one.

    Raises:
        StoreUnavailable: the online store cannot be reached.
    """
    fs = fs or store.get_store(cfg)
    rows = [
        {"user_id": int(user_id), "advertiser_id": int(a), "candidate_advertiser_id": int(a)}
        for a in advertiser_ids
    ]
    try:
        with translate_outage(cfg, "online ranking features"):
            feats = fs.get_feature_service(service, allow_cache=True)  # default False re-reads the registry
            return fs.get_online_features(features=feats, entity_rows=rows).to_df()
    except store.StoreUnavailable:
        raise
    except Exception:
        store.check_online(cfg, "online ranking features")  # an outage gets its clear error, else re-raise
        raise


@dataclass
class OnlineRanker:
    """Scores candidate ads of one user with a trained model and Feast online features."""

    model: SavedModel  # the trained model and its feature spec
    store: StoreConfig  # where the online features live
    service: str  # the feature service the model was trained on
    _fs: Any = field(default=None, init=False, repr=False)  # the feast.FeatureStore, built on first use

    @classmethod
    def load(cls, out: Path, task: str, library: str, feature_set: str, cfg: StoreConfig) -> OnlineRanker:
        """The model trained by ``adprior ranking train`` under ``out`` for (task, library, feature set)."""
        if feature_set not in SERVICES:
            raise ValueError(f"unknown feature set {feature_set!r}; expected one of {sorted(SERVICES)}")
        return cls(SavedModel.load(model_dir(out, task, library, feature_set)), cfg, SERVICES[feature_set])

    def score(
        self, user_id: int, candidate_advertisers: list[int], now: datetime | None = None
    ) -> np.ndarray:
        """P(conversion) of each candidate ad, given by its advertiser id (repeats allowed).

        Args:
            user_id: the user.
            candidate_advertisers: advertiser id of each candidate ad.
            now: request time (ages of timestamp features); default: the current time.
        """
        if not candidate_advertisers:
            return np.zeros(0)
        distinct = list(dict.fromkeys(int(a) for a in candidate_advertisers))
        if self._fs is None:
            self._fs = store.get_store(self.store)
        frame = online_features(self.store, user_id, distinct, self.service, self._fs)
        probs = self.model.predict(frame, pd.Timestamp(now or datetime.now(UTC)))
        by_adv = dict(zip(distinct, probs, strict=True))
        return np.array([by_adv[int(a)] for a in candidate_advertisers])
