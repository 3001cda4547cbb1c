"""The heuristic control of the consumers (issue 18; design.md "Metrics"): the best non-LLM advertiser list,
written in exactly the shape of ``llm_predictions`` so the same Feast views, retrieval generator and ranking
features consume it, and the LLM's value is what it adds over it.

:func:`heuristic_frame` scores one date's compiled examples with
:meth:`llm_predictor.eval.baselines.Baselines.heuristic` (history newest first, then the user's top brands
that name an advertiser, then co-occurrence, then popularity; top 20, distinct) and makes
:data:`adprior.contracts.PREDICTION_SCHEMA` rows: canonical names beside the ids, interests = the user's top
categories (taxonomy paths, as the answer grammar writes them), ``model_version`` e.g. ``heuristic-v1``,
``engine`` 'heuristic' and, in ``raw_output``, how many advertisers each signal contributed.
:func:`write_heuristic` writes them as the ``dt=<day>`` partition of the offline table
``heuristic_predictions`` (``adprior.store.write_partition``), which the ``heuristic_*`` views read.

Point in time: popularity and co-occurrence are fitted on the compiled examples of the ``fit_days`` before
the date with only the labels already known when the prediction is published (label_ts before the end of
the day), never a later one. By default only the users the LLM predicted that night get a row (the LLM's
``dt=<day>`` partition), so both arms have the same coverage and freshness (an incremental or
``--limit-users`` night refreshes a few users; the others keep an older list in either table).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from adprior import store
from adprior.contracts import PREDICTION_TABLES
from adprior.store import StoreConfig

log = logging.getLogger(__name__)

TABLE = PREDICTION_TABLES["heuristic"]  # the offline table the heuristic_* views read
SIGNALS = ("history", "brands", "cooccurrence", "popularity")  # the list's parts, in priority order


@dataclass
class HeuristicConfig:
    """One date of the heuristic control's predictions."""

    examples: Path  # compile output folder (the nightly's <workdir>/examples)
    day: date  # inference date x: rows get event_timestamp x + 1 day 00:00 UTC, like the LLM's
    store: StoreConfig = field(default_factory=StoreConfig)  # the Feast repo whose offline table gets them
    data: Path | None = (
        None  # raw-table root (advertisers: canonical names, aliases); None: names from examples
    )
    model_version: str = "heuristic-v1"  # written in every row; bump it when the rule changes
    k: int = 20  # advertisers per list (the LLM's 20)
    max_interests: int = 5  # interests per row: the user's first top categories (the LLM's <= 5)
    fit_days: int = 56  # anchors in [x - fit_days, x] fit popularity and co-occurrence (labels known by then)
    match_llm: bool = True  # rows only for users in the LLM's partition of x; False: every user of x


def event_time(day: date) -> datetime:
    """When a prediction of anchor date ``day`` becomes known: the end of that day (UTC)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _cells(v: Any) -> list[Any]:
    return [] if v is None or (isinstance(v, float) and v != v) else list(v)


def fit_rows(examples: pd.DataFrame, day: date, fit_days: int) -> pd.DataFrame:
    """The rows that fit the heuristic on ``day``: anchors in [day - fit_days, day], with each label kept
    only when it was known at the prediction's publication (label_ts before ``event_time(day)``)."""
    anchors = pd.to_datetime(examples["anchor_date"].astype(str)).dt.date
    rows = examples[(anchors <= day) & (anchors >= day - timedelta(days=fit_days))].copy()
    known = pd.to_datetime(rows["label_ts"], utc=True) < pd.Timestamp(event_time(day))
    for c in ("label_advertiser_id", "label_advertiser_name"):
        rows[c] = rows[c].where(known.to_numpy())
    return rows.reset_index(drop=True)


def advertiser_names(advertisers: pd.DataFrame | None, rows: pd.DataFrame) -> dict[int, str]:
    """advertiser id -> canonical name: the advertisers table first, then names seen in the examples."""
    out: dict[int, str] = {}
    if advertisers is not None:
        for a, n in zip(advertisers["advertiser_id"], advertisers["name"], strict=True):
            out.setdefault(int(a), str(n))
    for names, ids in zip(rows["active_advertisers"], rows["active_advertiser_ids"], strict=True):
        for n, a in zip(_cells(names), _cells(ids), strict=False):
            out.setdefault(int(a), str(n))
    lab = rows[rows["label_advertiser_id"].notna()]
    for a, n in zip(lab["label_advertiser_id"], lab["label_advertiser_name"], strict=True):
        if n is not None and n == n:
            out.setdefault(int(a), str(n))
    return out


def heuristic_frame(
    examples: pd.DataFrame,
    day: date,
    cfg: HeuristicConfig,
    advertisers: pd.DataFrame | None = None,
    users: set[int] | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """PREDICTION_SCHEMA rows of the heuristic for the users of anchor ``day`` in ``examples``.

    Args:
        examples: compiled examples of ``day`` and of the dates before it (the fit window).
        day: the inference date x.
        cfg: k, interests, fit window, model version.
        advertisers: the raw advertisers table (advertiser_id, name[, aliases, is_active]); None: names
            come from the examples.
        users: only these users (None: every user of ``day``).
        now: the rows' created_timestamp (default: now).
    """
    from llm_predictor.eval.baselines import Baselines

    fit = fit_rows(examples, day, cfg.fit_days)
    b = Baselines(k=cfg.k).fit(fit, advertisers)
    anchors = pd.to_datetime(examples["anchor_date"].astype(str)).dt.date
    rows = examples[anchors == day]
    if users is not None:
        rows = rows[rows["user_id"].astype(int).isin(users)]
    rows = rows.sort_values("user_id").reset_index(drop=True)
    names = advertiser_names(advertisers, pd.concat([fit, rows], ignore_index=True))
    lists = b.heuristic(rows)
    out: dict[str, list[Any]] = {c: [] for c in ("advertiser_ids", "advertiser_names", "interests")}
    out |= {"status": [], "raw_output": []}
    for row, ids in zip(rows.to_dict("records"), lists, strict=True):
        past = [int(a) for a in _cells(row["active_advertiser_ids"])]
        hist, brands, cooc = set(past), set(b.brands(row)), set(b.cooccurring(past))
        parts = dict.fromkeys(SIGNALS, 0)
        for a in ids:  # each advertiser is credited to the first signal that put it in the list
            src = (
                "history" if a in hist else "brands" if a in brands else "cooccurrence" if a in cooc else None
            )
            parts[src or "popularity"] += 1
        out["advertiser_ids"].append(ids)
        out["advertiser_names"].append([names.get(a, str(a)) for a in ids])  # str(id): a name never seen
        out["interests"].append([str(c) for c in _cells(row["top_categories"])[: cfg.max_interests]])
        out["status"].append("ok" if len(ids) == cfg.k else "short_pool" if ids else "empty_pool")
        out["raw_output"].append(" ".join(f"{s}={n}" for s, n in parts.items()))
    n = len(rows)
    return pd.DataFrame(
        {
            "user_id": rows["user_id"].astype("int64"),
            "event_timestamp": pd.Series([event_time(day)] * n, dtype="datetime64[us, UTC]"),
            "created_timestamp": pd.Series([now or datetime.now(UTC)] * n, dtype="datetime64[us, UTC]"),
            "anchor_date": [day] * n,
            "advertiser_ids": out["advertiser_ids"],
            "advertiser_names": out["advertiser_names"],
            "raw_names": out["advertiser_names"],
            "interests": out["interests"],
            "model_version": [cfg.model_version] * n,
            "engine": ["heuristic"] * n,
            "status": out["status"],
            "n_unresolved": [0] * n,
            "raw_output": out["raw_output"],
        }
    )


def llm_users(cfg: StoreConfig, day: date) -> set[int]:
    """The users of the LLM's predictions partition of ``day``.

    Raises:
        FileNotFoundError: the LLM has no partition for ``day`` (run inference first, or match_llm=False).
    """
    path = store.offline_dir(cfg, PREDICTION_TABLES["llm"]) / f"dt={day.isoformat()}.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"no LLM predictions of {day} at {path}: run inference first, or write every user "
            "(match_llm=False, `adprior heuristic --all-users`)"
        )
    return {int(u) for u in pq.read_table(path, columns=["user_id"]).column(0).to_pylist()}


def _examples_window(examples: Path, day: date, fit_days: int) -> pd.DataFrame:
    """The compiled examples of the anchors in [day - fit_days, day] (one partition per anchor)."""
    from llm_predictor.data.compiled import load_examples

    dates = sorted(
        d
        for p in (Path(examples) / "examples").glob("anchor_date=*")
        if day - timedelta(days=fit_days) <= (d := date.fromisoformat(p.name.split("=", 1)[1])) <= day
    )
    if day not in dates:
        raise FileNotFoundError(f"no compiled examples of {day} under {Path(examples) / 'examples'}")
    return pd.concat([load_examples(examples, d) for d in dates], ignore_index=True)


def write_heuristic(cfg: HeuristicConfig) -> dict[str, Any]:
    """Write the heuristic's predictions of ``cfg.day`` into the offline table ``heuristic_predictions``.

    Returns:
        ``{"day", "model_version", "users", "fit_rows", "fit_labelled", "status", "signals",
        "mean_advertisers", "with_interests", "output", "seconds"}``.
    """
    t0 = time.perf_counter()
    examples = _examples_window(cfg.examples, cfg.day, cfg.fit_days)
    advertisers = None
    if cfg.data is not None:
        from world.schema import RawLayout

        layout = RawLayout(Path(cfg.data))
        if layout.table("advertisers").exists():
            advertisers = layout.read("advertisers").to_pandas()
    users = llm_users(cfg.store, cfg.day) if cfg.match_llm else None
    frame = heuristic_frame(examples, cfg.day, cfg, advertisers, users)
    path = store.write_partition(cfg.store, TABLE, frame, f"dt={cfg.day.isoformat()}")
    fit = fit_rows(examples, cfg.day, cfg.fit_days)
    signals = dict.fromkeys(SIGNALS, 0)
    for text in frame["raw_output"]:
        for part in text.split():
            s, _, v = part.partition("=")
            signals[s] += int(v)
    summary = {
        "day": cfg.day.isoformat(),
        "model_version": cfg.model_version,
        "users": len(frame),
        "fit_rows": len(fit),
        "fit_labelled": int(fit["label_advertiser_id"].notna().sum()),
        "status": frame["status"].value_counts().to_dict(),
        "signals": signals,
        "mean_advertisers": float(frame["advertiser_ids"].map(len).mean()) if len(frame) else 0.0,
        "with_interests": int(frame["interests"].map(bool).sum()),
        "output": str(path),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log.info("heuristic control %s: %s", cfg.day, summary)
    return summary


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line for logs and the CLI."""
    return (
        f"heuristic {summary['day']}: {summary['users']} users, {summary['mean_advertisers']:.1f} advertisers "
        f"each (signals {summary['signals']}), fitted on {summary['fit_rows']} rows "
        f"({summary['fit_labelled']} labels known); {summary['output']}"
    )
