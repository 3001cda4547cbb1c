"""Ad impressions labelled ctcvr and vtcvr from the raw events (Spark).

For every ``impression`` event (user, advertiser, item, time t):

* ``clicked``: a ``click`` by the same user on the same item in ``[t, t + click_window_s]``;
* ``ctcvr`` = clicked and a high-priority conversion (any conversion event type, conversion type in
  ``HIGH_PRIORITY_TYPES``) by the user with the impression's advertiser in ``(t, t + ctcvr window]``;
* ``vtcvr`` = not clicked and such a conversion in ``(t, t + vtcvr window]`` (view-through).

Only impressions whose longer label window ends before the last event are kept (labels are mature).
Both tasks are trained on all impressions: ctcvr is P(click and convert | impression), vtcvr is
P(no click and convert | impression).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ranking.config import RankingConfig
from world.schema import CONVERSION_EVENTS, HIGH_PRIORITY_TYPES, RawLayout

log = logging.getLogger(__name__)

LABEL_COLUMNS = [
    "impression_id",
    "user_id",
    "advertiser_id",
    "item_id",
    "event_timestamp",
    "clicked",
    "ctcvr",
    "vtcvr",
]


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _between(ts: Column, t0: Column, seconds: float, closed_left: bool) -> Column:
    """``t0 <= ts <= t0 + seconds`` (or ``t0 < ts``), compared in microseconds since the epoch."""
    d = F.unix_micros(ts) - F.unix_micros(t0)
    return ((d >= 0) if closed_left else (d > 0)) & (d <= F.lit(int(seconds * 1_000_000)))


def impression_window(
    cfg: RankingConfig, events: DataFrame, first_prediction: datetime | None
) -> tuple[date, date]:
    """[start, end) days of the impressions to label (see RankingConfig.start / end)."""
    last = events.agg(F.max("ts")).collect()[0][0]
    if last is None:
        raise ValueError(f"raw table 'events' under {cfg.data} is empty")
    last = last.replace(tzinfo=UTC) if last.tzinfo is None else last.astimezone(UTC)
    longest = max(cfg.ctcvr_window_days, cfg.vtcvr_window_days)
    end = cfg.end or (last - timedelta(days=longest)).date()
    if cfg.start is not None:
        start = cfg.start
    elif first_prediction is not None:
        start = first_prediction.astimezone(UTC).date()
    else:
        raise ValueError("no LLM predictions in the store and no --start given")
    if start >= end:
        raise ValueError(f"empty impression window [{start}, {end}): the events end at {last:%Y-%m-%d %H:%M}")
    return start, end


def label_impressions(cfg: RankingConfig, first_prediction: datetime | None = None) -> pd.DataFrame:
    """Impressions of ``[start, end)`` with clicked / ctcvr / vtcvr labels, ordered by time.

    Args:
        cfg: the ranking configuration (data root, windows, Spark).
        first_prediction: event timestamp of the first LLM prediction (the default window start).

    Returns:
        A frame with :data:`LABEL_COLUMNS`; ``event_timestamp`` is the impression time (UTC) and
        ``impression_id`` a stable 64-bit hash of (user, item, time).
    """
    from adprior.io import get_spark, read_raw

    spark = get_spark(cfg.spark)
    events = read_raw(spark, RawLayout(cfg.data), "events")
    start, end = impression_window(cfg, events, first_prediction)
    log.info("labelling impressions of [%s, %s) under %s", start, end, cfg.data)
    imp = (
        events.where(
            (F.col("event_type") == "impression")
            & F.col("advertiser_id").isNotNull()
            & (F.col("ts") >= F.lit(_midnight(start)))
            & (F.col("ts") < F.lit(_midnight(end)))
        )
        .select("user_id", "advertiser_id", "item_id", F.col("ts").alias("t"))
        .dropDuplicates(["user_id", "item_id", "t"])
        .withColumn("impression_id", F.xxhash64("user_id", "item_id", "t"))
    )
    clicks = events.where(F.col("event_type") == "click").select(
        "user_id", "item_id", F.col("ts").alias("click_ts")
    )
    convs = events.where(
        F.col("event_type").isin(*CONVERSION_EVENTS)
        & F.col("conversion_type").isin(*HIGH_PRIORITY_TYPES)
        & F.col("advertiser_id").isNotNull()
    ).select("user_id", "advertiser_id", F.col("ts").alias("conv_ts"))

    clicked = (
        imp.join(clicks, ["user_id", "item_id"])
        .where(_between(F.col("click_ts"), F.col("t"), cfg.click_window_s, closed_left=True))
        .select("impression_id")
        .distinct()
        .withColumn("clicked", F.lit(True))
    )

    def converted_within(days: float, name: str) -> DataFrame:
        secs = days * 86400.0
        return (
            imp.join(convs, ["user_id", "advertiser_id"])
            .where(_between(F.col("conv_ts"), F.col("t"), secs, closed_left=False))
            .select("impression_id")
            .distinct()
            .withColumn(name, F.lit(True))
        )

    out = (
        imp.join(clicked, "impression_id", "left")
        .join(converted_within(cfg.ctcvr_window_days, "conv_ct"), "impression_id", "left")
        .join(converted_within(cfg.vtcvr_window_days, "conv_vt"), "impression_id", "left")
        .select(
            "impression_id",
            "user_id",
            "advertiser_id",
            "item_id",
            F.col("t").alias("event_timestamp"),
            F.coalesce("clicked", F.lit(False)).alias("clicked"),
            (F.coalesce("clicked", F.lit(False)) & F.coalesce("conv_ct", F.lit(False)))
            .cast("int")
            .alias("ctcvr"),
            (~F.coalesce("clicked", F.lit(False)) & F.coalesce("conv_vt", F.lit(False)))
            .cast("int")
            .alias("vtcvr"),
        )
    )
    df = out.toPandas()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df = df.sort_values(["event_timestamp", "impression_id"], kind="stable").reset_index(drop=True)
    log.info(
        "labelled %d impressions: clicked %.3f, ctcvr %.4f, vtcvr %.4f",
        len(df),
        df["clicked"].mean() if len(df) else 0,
        df["ctcvr"].mean() if len(df) else 0,
        df["vtcvr"].mean() if len(df) else 0,
    )
    return df[LABEL_COLUMNS]
