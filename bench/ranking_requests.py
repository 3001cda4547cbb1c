"""The requests of the online ranking benchmark (bench/ranking.py): users, candidate ads, time.

A request is one user with an LLM prediction in the offline ``llm_predictions`` table plus a number
of candidate ads drawn from the raw ``items`` table of the run's world (else one ad per advertiser of
the offline ``advertiser_stats`` table), each ad given by its advertiser id. The online stores are
materialized up to the latest offline ``event_timestamp`` + 1 s (:func:`materialize_end`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OFFLINE_TABLES = ("user_profile", "user_behavior", "advertiser_stats", "llm_predictions")


@dataclass
class Request:
    """One scoring request: a user and the advertiser id of each candidate ad."""

    user_id: int  # the user scored
    advertisers: list[int]  # one per candidate ad (repeats: ads of one advertiser)

    @property
    def distinct(self) -> list[int]:
        """Distinct candidate advertisers in first-seen order (what OnlineRanker.score fetches)."""
        return list(dict.fromkeys(self.advertisers))


def read_columns(folder: Path, columns: list[str]) -> Any:
    """``columns`` of a folder of parquet files as a pyarrow table."""
    import pyarrow.dataset as pads

    return pads.dataset(folder, format="parquet").to_table(columns=columns)


def materialize_end(offline: Path) -> datetime:
    """The latest event_timestamp of the offline feature tables + 1 s (UTC)."""
    import pyarrow.compute as pc

    latest: list[datetime] = []
    for table in OFFLINE_TABLES:
        folder = offline / table
        if folder.is_dir() and any(folder.glob("*.parquet")):
            m = pc.max(read_columns(folder, ["event_timestamp"])["event_timestamp"]).as_py()
            if m is not None:
                latest.append(m if m.tzinfo else m.replace(tzinfo=UTC))
    if not latest:
        raise FileNotFoundError(f"no offline feature rows under {offline}")
    return max(latest).astimezone(UTC) + timedelta(seconds=1)


def data_root(out: Path, data: Path | None) -> Path | None:
    """The run's raw-table root: ``--data``, else ``config.data`` of ``<out>/metrics.json``."""
    if data is not None:
        return data
    metrics = out / "metrics.json"
    if metrics.exists():
        value = json.loads(metrics.read_text()).get("config", {}).get("data")
        if value:
            return Path(value)
    return None


def candidate_pool(root: Path | None, offline: Path) -> tuple[np.ndarray, str]:
    """Advertiser id of every candidate ad (one entry per item) and where it came from."""
    if root is not None and (root / "items").is_dir() and any((root / "items").rglob("*.parquet")):
        ids = read_columns(root / "items", ["advertiser_id"])["advertiser_id"].drop_null().to_numpy()
        ids = ids.astype(np.int64)
        return ids, f"items table of {root}"
    log.warning(
        "no items table under %s; candidate ads are the advertisers of the offline advertiser_stats table",
        root,
    )
    ids = np.unique(read_columns(offline / "advertiser_stats", ["advertiser_id"])["advertiser_id"].to_numpy())
    return ids.astype(np.int64), "offline advertiser_stats table (one ad per advertiser)"


def make_requests(
    users: np.ndarray, ads: np.ndarray, n: int, candidates: int, rng: np.random.Generator
) -> list[Request]:
    """``n`` requests: a uniform user and ``candidates`` ads (without replacement when there are enough)."""
    replace = candidates > len(ads)
    return [
        Request(int(rng.choice(users)), [int(a) for a in rng.choice(ads, size=candidates, replace=replace)])
        for _ in range(n)
    ]
