"""The ranking training set: labelled impressions joined to features only through Feast.

Each impression becomes one entity row ``(user_id, advertiser_id, candidate_advertiser_id,
event_timestamp)``; :func:`adprior.store.historical_features` (Feast's point-in-time join, per view)
adds the features of a feature service as they were known at the impression's time. The three
services (``ranking.config.SERVICES``) differ only by the candidate features of a predictor (none, the
heuristic control's, the LLM's), so the three models see the same rows. The split is by time: the earliest impressions train, the next validate (early stopping), the
latest test.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from adprior import store
from adprior.store.historical import feature_refs
from ranking.config import PREDICTORS, SERVICES, RankingConfig
from ranking.labels import LABEL_COLUMNS, label_impressions

log = logging.getLogger(__name__)

ENTITY_COLUMNS = ["user_id", "advertiser_id", "candidate_advertiser_id", "event_timestamp"]


def first_prediction(cfg: RankingConfig) -> datetime | None:
    """Earliest ``event_timestamp`` in the store's offline ``llm_predictions`` table (None if empty)."""
    path = store.offline_dir(cfg.store, "llm_predictions")
    if not path.exists() or not any(path.glob("*.parquet")):
        return None
    col = pads.dataset(path, format="parquet").to_table(columns=["event_timestamp"]).column(0)
    if len(col) == 0:
        return None
    return pd.Timestamp(min(col.to_pylist())).tz_convert(UTC).to_pydatetime()


def service_features(cfg: RankingConfig, service: str) -> list[str]:
    """Output names of a feature service's features (short names, in service order)."""
    fs = store.get_store(cfg.store)
    return [name for _, name in feature_refs(fs, service)]


def time_split(ts: pd.Series, valid_fraction: float, test_fraction: float) -> pd.Series:
    """'train' | 'valid' | 'test' by time quantiles of ``ts`` (a boundary time belongs to the later split)."""
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"valid_fraction={valid_fraction}, test_fraction={test_fraction}: need 0 < v, t and v + t < 1"
        )
    ns = ts.astype("int64")
    t_valid, t_test = np.quantile(ns, [1 - valid_fraction - test_fraction, 1 - test_fraction])
    return pd.Series(
        np.where(ns >= t_test, "test", np.where(ns >= t_valid, "valid", "train")), index=ts.index
    )


def build_dataset(cfg: RankingConfig) -> dict[str, pd.DataFrame]:
    """Label impressions and fetch every service's point-in-time features; write them under ``cfg.out``.

    Args:
        cfg: the ranking configuration.

    Returns:
        ``{"baseline": frame, "heuristic": frame, "llm": frame}``: the label columns, ``candidate_advertiser_id``,
        ``split`` and the service's features, one row per impression in the same order. Also written
        as ``<out>/dataset/<set>.parquet`` with ``<out>/dataset/summary.json``.
    """
    t0 = time.perf_counter()
    labels = label_impressions(cfg, first_prediction(cfg))
    if labels.empty:
        raise ValueError(f"no impressions to train on under {cfg.data}")
    labels["split"] = time_split(labels["event_timestamp"], cfg.valid_fraction, cfg.test_fraction)
    entity = labels.assign(candidate_advertiser_id=labels["advertiser_id"])
    t_label = time.perf_counter() - t0
    out: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    for name, service in SERVICES.items():
        t = time.perf_counter()
        log.info("point-in-time features of %d impressions from service %s", len(entity), service)
        frame = store.historical_features(cfg.store, entity, service)
        if (
            len(frame) != len(entity)
            or not (frame["impression_id"].to_numpy() == entity["impression_id"].to_numpy()).all()
        ):
            raise RuntimeError(f"feature service {service!r}: historical features lost or reordered rows")
        out[name] = frame
        seconds[name] = round(time.perf_counter() - t, 2)
    d = Path(cfg.out) / "dataset"
    d.mkdir(parents=True, exist_ok=True)
    for name, frame in out.items():
        frame.to_parquet(d / f"{name}.parquet", index=False)
    summary = {
        "impressions": len(labels),
        "users": int(labels["user_id"].nunique()),
        "start": labels["event_timestamp"].min().isoformat(),
        "end": labels["event_timestamp"].max().isoformat(),
        "splits": {
            s: {
                "rows": int((labels["split"] == s).sum()),
                "users": int(labels.loc[labels["split"] == s, "user_id"].nunique()),
                **{task: int(labels.loc[labels["split"] == s, task].sum()) for task in ("ctcvr", "vtcvr")},
                "clicked": int(labels.loc[labels["split"] == s, "clicked"].sum()),
            }
            for s in ("train", "valid", "test")
        },
        **{
            f"{p}_has_prediction": float(out[p][f"{p}_has_prediction"].mean())
            if f"{p}_has_prediction" in out[p]
            else None
            for p in PREDICTORS
        },
        "seconds": {"label": round(t_label, 2), **seconds},
    }
    (d / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("training set: %s", summary)
    return out


def load_dataset(out: Path) -> dict[str, pd.DataFrame]:
    """The frames written by :func:`build_dataset`."""
    d = Path(out) / "dataset"
    if not (d / "summary.json").exists():
        raise FileNotFoundError(f"no training set under {d}; run `adprior ranking train` first")
    missing = [name for name in SERVICES if not (d / f"{name}.parquet").exists()]
    if missing:
        raise FileNotFoundError(f"training set under {d} lacks {missing} (an older run): train without reuse")
    return {name: pd.read_parquet(d / f"{name}.parquet") for name in SERVICES}


__all__ = [
    "ENTITY_COLUMNS",
    "LABEL_COLUMNS",
    "build_dataset",
    "first_prediction",
    "load_dataset",
    "time_split",
]
