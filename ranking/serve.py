"""Online scoring: a user and candidate ads -> Feast online features -> the trained model's scores.

The same :class:`ranking.models.FeatureSpec` turns the online frame into the model matrix as the
offline path does, so a candidate with the same feature values gets the same score. Features are
fetched once per distinct candidate advertiser (the LLM and behaviour features depend on the
advertiser, not the item) and broadcast back to the ads.

Two ways to the same frame: the fast path (default), :class:`adprior.store.CandidateFeatures` — the
user's views read once, the advertisers' rows once (and kept ``advertiser_max_age_s``, a minute by
default), the service's on-demand views run in process by their own UDFs, the booster scoring the
columns as one float array (``FeatureSpec.array``) — and :func:`online_features`, one ``get_online_features`` with the feature service (Feast
runs the on-demand views), kept as the reference the fast path is tested and benchmarked against.
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

ADVERTISER_MAX_AGE_S = 60.0  # OnlineRanker's default reuse of an advertiser's feature row (seconds)


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
    fast: bool = True  # CandidateFeatures; False: get_online_features with the service (online_features)
    # fast path: reuse an advertiser's row this long (0: read per request). Advertiser views change when
    # `feast materialize` runs (nightly), so a minute of reuse costs nothing and saves the read.
    advertiser_max_age_s: float = ADVERTISER_MAX_AGE_S
    _fs: Any = field(default=None, init=False, repr=False)  # the feast.FeatureStore, built on first use
    _reader: Any = field(default=None, init=False, repr=False)  # the CandidateFeatures, built on first use

    @classmethod
    def load(
        cls,
        out: Path,
        task: str,
        library: str,
        feature_set: str,
        cfg: StoreConfig,
        fast: bool = True,
        advertiser_max_age_s: float = ADVERTISER_MAX_AGE_S,
    ) -> OnlineRanker:
        """The model trained by ``adprior ranking train`` under ``out`` for (task, library, feature set)."""
        if feature_set not in SERVICES:
            raise ValueError(f"unknown feature set {feature_set!r}; expected one of {sorted(SERVICES)}")
        model = SavedModel.load(model_dir(out, task, library, feature_set))
        return cls(model, cfg, SERVICES[feature_set], fast, advertiser_max_age_s)

    def features(
        self, user_id: int, advertisers: list[int], as_frame: bool = True
    ) -> pd.DataFrame | dict[str, Any]:
        """The online feature frame the model scores: one row per advertiser id, in order.

        Args:
            user_id: the user.
            advertisers: candidate advertiser ids.
            as_frame: False: the fast path's columns by name, without building the DataFrame (what
                ``score`` passes to the model; the Feast path always gives its DataFrame).

        Raises:
            StoreUnavailable: the online store cannot be reached.
        """
        if self._fs is None:
            self._fs = store.get_store(self.store)
        if not self.fast:
            return online_features(self.store, user_id, advertisers, self.service, self._fs)
        if self._reader is None:
            self._reader = store.CandidateFeatures(
                self.store, self.service, self.advertiser_max_age_s, store=self._fs
            )
        if as_frame:
            return self._reader.frame(user_id, advertisers)
        return self._reader.columns(user_id, advertisers)

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
        frame = self.features(user_id, distinct, as_frame=False)
        probs = self.model.predict(frame, pd.Timestamp(now or datetime.now(UTC)))
        by_adv = dict(zip(distinct, probs, strict=True))
        return np.array([by_adv[int(a)] for a in candidate_advertisers])
