"""Per-user SID sequences on compiled examples (paper 3.5).

:func:`attach_sid_sequences` copies compiled examples adding the ``sid_sequences`` column that the
``sft_sid`` / ``grpo_sid`` templates render: per (user, anchor date), the SIDs of the items of the user's
recent conversions, newest first.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from llm_predictor.sid.artifacts import load_sid_map
from world.schema import CONVERSION_EVENTS, RawLayout

log = logging.getLogger(__name__)

ATTACH_SUMMARY_FILE = "sid_attach.json"


@dataclass
class AttachConfig:
    """Adding the ``sid_sequences`` column to compiled examples."""

    examples: Path = Path("data/examples")  # compile output (examples/, preset_pool/)
    data: Path = Path("data/world")  # raw-table root the examples were compiled from (events)
    sids: Path = Path("runs/sid")  # build_sids output (sid_map.parquet)
    out: Path = Path("data/examples_sid")  # output folder, same layout as the compile output
    max_items: int = 20  # SIDs kept per user, newest first (PromptBudget.max_sid_sequences cuts again)
    lookback_days: int | None = None  # only conversions in the last N days before x + 1 day; None = all
    event_types: tuple[str, ...] = CONVERSION_EVENTS  # events whose items make the sequence


def _utc_day(d: date) -> pd.Timestamp:
    return pd.Timestamp(d.year, d.month, d.day, tz="UTC")


def sid_sequences_for(
    events: pd.DataFrame,
    sid_map: pd.DataFrame,
    users_dates: pd.DataFrame,
    max_items: int,
    lookback_days: int | None = None,
) -> pd.DataFrame:
    """Per (user_id, anchor_date): SIDs of the user's items with ts < anchor_date + 1 day, newest first.

    Args:
        events: user_id, ts (UTC), item_id of the conversion events.
        sid_map: item_id -> sid.
        users_dates: the (user_id, anchor_date) pairs wanted (anchor_date: ``datetime.date``).
        max_items: SIDs kept per pair after de-duplication (newest occurrence wins).
        lookback_days: also require ts >= anchor_date + 1 day - lookback_days; None = no lower bound.

    Returns:
        user_id, anchor_date, sid_sequences (list of str); pairs without conversions get [].
    """
    ev = events.dropna(subset=["item_id"]).merge(sid_map[["item_id", "sid"]], on="item_id", how="inner")
    ev = ev.sort_values(["user_id", "ts", "item_id"], ascending=[True, False, True], kind="stable")
    parts = []
    for x, grp in users_dates.groupby("anchor_date", sort=True):
        cutoff = _utc_day(x) + timedelta(days=1)
        mask = (ev["ts"] < cutoff) & ev["user_id"].isin(grp["user_id"])
        if lookback_days is not None:
            mask &= ev["ts"] >= cutoff - timedelta(days=lookback_days)
        e = ev.loc[mask, ["user_id", "sid"]].drop_duplicates(["user_id", "sid"], keep="first")
        e = e.groupby("user_id", sort=False).head(max_items)
        lists = e.groupby("user_id", sort=False)["sid"].agg(list)
        got = grp[["user_id"]].drop_duplicates().assign(anchor_date=x)
        got["sid_sequences"] = got["user_id"].map(lists)
        parts.append(got)
    res = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"user_id": [], "anchor_date": [], "sid_sequences": []})
    )
    res["sid_sequences"] = [v if isinstance(v, list) else [] for v in res["sid_sequences"]]
    return res


def attach_sid_sequences(
    examples_folder: Path,
    raw_data_root: Path,
    sid_out: Path,
    out_folder: Path,
    max_items: int = 20,
    lookback_days: int | None = None,
    event_types: Sequence[str] = CONVERSION_EVENTS,
) -> dict[str, Any]:
    """Copy compiled examples to ``out_folder`` with an extra ``sid_sequences`` list<string> column.

    Per (user, anchor date x): the SIDs of the items of the user's conversion events (``event_types``) with
    ts < x + 1 day (the compile features' cut-off), newest first, de-duplicated, at most ``max_items``.
    ``out_folder`` has the compile layout (``examples/anchor_date=.../``, ``preset_pool/``, the summaries),
    so every ``--examples`` reader takes it; text templates ignore the extra column.

    Returns:
        Coverage statistics, also written to ``<out_folder>/sid_attach.json``.
    """
    t0 = time.perf_counter()
    src, dst = Path(examples_folder), Path(out_folder)
    if src.resolve() == dst.resolve():
        raise ValueError("out_folder must differ from examples_folder")
    ds = pads.dataset(src / "examples", format="parquet", partitioning="hive")
    table = ds.to_table()
    if "sid_sequences" in table.column_names:
        table = table.drop(["sid_sequences"])
    ex = table.to_pandas()
    ex["_date"] = ex["anchor_date"].astype(str).map(date.fromisoformat)
    pairs = ex[["user_id", "_date"]].rename(columns={"_date": "anchor_date"})
    last = _utc_day(max(pairs["anchor_date"])) + timedelta(days=1) if len(pairs) else None

    events_path = RawLayout(Path(raw_data_root)).table("events")
    filt = pads.field("event_type").isin(list(event_types)) & pads.field("item_id").is_valid()
    if last is not None:
        filt &= pads.field("ts") < pa.scalar(last.to_pydatetime(), pa.timestamp("us", tz="UTC"))
    events = (
        pads.dataset(events_path, format="parquet", partitioning="hive")
        .to_table(columns=["user_id", "ts", "item_id"], filter=filt)
        .to_pandas()
    )
    events = events[events["user_id"].isin(set(pairs["user_id"]))]
    sid_map = load_sid_map(sid_out)
    seqs = sid_sequences_for(events, sid_map, pairs, max_items, lookback_days)
    ex = ex.merge(seqs.rename(columns={"anchor_date": "_date"}), on=["user_id", "_date"], how="left")
    ex["sid_sequences"] = [v if isinstance(v, list) else [] for v in ex["sid_sequences"]]

    if dst.exists():
        shutil.rmtree(dst)
    (dst / "examples").mkdir(parents=True)
    schema = table.schema.remove(table.schema.get_field_index("anchor_date")).append(
        pa.field("sid_sequences", pa.list_(pa.string()))
    )
    for x, grp in ex.groupby("_date", sort=True):
        part = dst / "examples" / f"anchor_date={x.isoformat()}"
        part.mkdir()
        body = grp.drop(columns=["_date", "anchor_date"]).sort_values("user_id")
        pq.write_table(
            pa.Table.from_pandas(body, schema=schema, preserve_index=False), part / "part-00000.parquet"
        )
    for name in ("preset_pool",):
        if (src / name).exists():
            shutil.copytree(src / name, dst / name, ignore=shutil.ignore_patterns(".*", "_*"))
    for name in ("summary.json", "summary.md"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    lens = ex["sid_sequences"].map(len)
    summary = {
        "examples": str(src),
        "data": str(raw_data_root),
        "sids": str(sid_out),
        "max_items": max_items,
        "lookback_days": lookback_days,
        "event_types": list(event_types),
        "rows": len(ex),
        "rows_with_sids": int((lens > 0).sum()),
        "share_with_sids": round(float((lens > 0).mean()), 4) if len(ex) else 0.0,
        "mean_sids": round(float(lens.mean()), 3) if len(ex) else 0.0,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (dst / ATTACH_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    log.info(
        "attached SID sequences to %d rows (%.1f%% non-empty) -> %s",
        len(ex),
        100 * summary["share_with_sids"],
        dst,
    )
    return summary


def attach(cfg: AttachConfig) -> dict[str, Any]:
    """:func:`attach_sid_sequences` from an :class:`AttachConfig`."""
    return attach_sid_sequences(
        cfg.examples, cfg.data, cfg.sids, cfg.out, cfg.max_items, cfg.lookback_days, cfg.event_types
    )
