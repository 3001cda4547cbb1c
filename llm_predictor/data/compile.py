"""Spark example compilation (paper 3.2): user selection, labels, features, splits, V0/V1.

For each anchor date x:

* Serving population (V1): users with any conversion event in the ``serving_lookback_days`` before
  x (all four conversion event types: on- and off-platform), optionally restricted to countries.
* Label: the *first* conversion in (x, x+7d] whose type is high priority and whose advertiser is
  active and spent that day (``advertiser_daily.spend > 0`` on the conversion's date). Users
  without one keep a null label (they are still served nightly).
* Features look back from x only: every event used has ``ts < x + 1 day`` (the whole anchor day
  counts as past). Lists are recency-ordered (newest first), de-duplicated case-insensitively
  (keeping the newest occurrence) and cut to ``max_items`` entries of ``max_chars`` characters.
* Split: a salted xxhash64 of user_id: 0.9 train / 0.1 eval, the same user always on one side.
* V0: users whose matched- and attributed-conversion sequences each have >= ``v0_min`` entries.

Output under ``out``: ``examples/`` (parquet, partitioned by anchor_date), ``preset_pool/``,
``summary.json`` and ``summary.md``. :mod:`llm_predictor.data.compiled` reads the first two back,
:mod:`llm_predictor.data.summary` computes the summary.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from adprior.contracts import EXAMPLE_SCHEMA
from adprior.io import SparkConfig, get_spark, read_raw
from llm_predictor.data.summary import prompt_length_stats, summarize, summary_markdown
from world.schema import (
    CONVERSION_EVENTS,
    CONVERSION_PRIORITY,
    EVENT_TYPES,
    HIGH_PRIORITY_TYPES,
    ContractError,
    RawLayout,
)

log = logging.getLogger(__name__)


@dataclass
class CompileConfig:
    """What examples to compile from which raw tables."""

    data: Path = Path("data/world")  # data root holding the raw tables
    out: Path = Path("data/examples")  # output folder
    anchor_dates: list[date] = field(default_factory=lambda: [date(2026, 6, 22)])  # anchor dates x
    label_days: int = 7  # label window (x, x + label_days]
    serving_lookback_days: int = 90  # a conversion in this many days before x => served (V1)
    countries: tuple[str, ...] | None = ("US",)  # serving countries; None = all
    label_conversion_types: tuple[str, ...] = HIGH_PRIORITY_TYPES  # high-priority types only
    search_lookback_days: int = 90  # on-/off-site searches (paper: 3 months)
    url_lookback_days: int = 14  # off-site URLs (paper: 2 weeks)
    conversion_lookback_days: int = 180  # conversions, active advertisers, V0 counts
    category_lookback_days: int = 90  # top categories and brands
    max_items: int = 30  # entries kept per list (the prompt budget cuts further, by tokens)
    max_chars: int = 160  # characters kept per entry
    top_k_categories: int = 10  # entries in top_categories
    top_k_brands: int = 10  # entries in top_brands
    preset_pool_size: int = 60  # top advertisers by revenue on day x with spend > 0
    prompt_sample: int = 300  # examples per date whose prompt length is measured for the summary
    tokenizer: str | None = "base"  # tokenizer for prompt lengths: 'base' (SmolLM2), a model dir, None
    v0_min: int = 10  # V0: matched and attributed sequences each have >= v0_min entries
    eval_fraction: float = 0.1  # share of users in the eval split
    split_salt: str = "adprior-split-v1"  # salt of the user_id hash; change it => a new split
    validate: bool = True  # check every event read against the contract (one extra pass)
    spark: SparkConfig = field(default_factory=SparkConfig)  # where Spark runs

    def longest_lookback_days(self) -> int:
        """Days before x that any feature looks back: the events a date reads start there."""
        return max(
            self.serving_lookback_days,
            self.search_lookback_days,
            self.url_lookback_days,
            self.conversion_lookback_days,
            self.category_lookback_days,
        )


def _check_events(events: DataFrame, path: Path) -> None:
    """Fail on the first event that breaks the contract, naming the column, the file and the row."""
    checks = [
        ("user_id", F.col("user_id").isNull()),
        ("ts", F.col("ts").isNull()),
        ("event_type", F.col("event_type").isNull() | ~F.col("event_type").isin(*EVENT_TYPES)),
        (
            "conversion_type",
            F.col("conversion_type").isNotNull() & ~F.col("conversion_type").isin(*CONVERSION_PRIORITY),
        ),
    ]
    cond = F.lit(False)
    for _, c in checks:
        cond = cond | c
    bad = events.where(cond).withColumn("_file", F.input_file_name()).limit(1).collect()
    if bad:
        row = bad[0].asDict()
        column = next(
            col
            for col, _ in checks
            if (col in ("user_id", "ts") and row[col] is None)
            or (col == "event_type" and row[col] not in EVENT_TYPES)
            or (col == "conversion_type" and row[col] is not None and row[col] not in CONVERSION_PRIORITY)
        )
        file = row.pop("_file")
        raise ContractError(
            f"table 'events' at {path}: column {column!r} is invalid ({row.get(column)!r}) in file {file}, row {row}"
        )


def _field_lists(
    p: DataFrame,
    specs: list[tuple[str, F.Column, str]],
    recent: dict[str, int],
    top: dict[str, int],
    max_chars: int,
) -> DataFrame:
    """All list features in one pass (two shuffles, whatever the number of fields).

    ``specs``: (field name, condition on an event, column holding the value). Each event yields one
    (field, value) pair per spec it satisfies. Fields in ``recent`` keep distinct values newest
    first; fields in ``top`` keep the most frequent values (ties: newest first). Values are
    de-duplicated case-insensitively, keeping the newest spelling.
    """
    pairs = F.array(
        *[
            F.when(
                cond & F.col(col).isNotNull() & (F.length(F.trim(F.col(col))) > 0),
                F.struct(F.lit(name).alias("f"), F.trim(F.col(col)).alias("v")),
            )
            for name, cond, col in specs
        ]
    )
    exploded = p.select(
        "user_id", "ts", F.explode(F.filter(pairs, lambda x: x.isNotNull())).alias("_p")
    ).select("user_id", "ts", F.col("_p.f").alias("f"), F.col("_p.v").alias("v"))
    dedup = exploded.groupBy("user_id", "f", F.lower(F.col("v")).alias("_k")).agg(
        F.max_by(F.substring(F.col("v"), 1, max_chars), F.col("ts")).alias("v"),
        F.max("ts").alias("ts"),
        F.count("*").alias("n"),
    )
    per_user = dedup.groupBy("user_id").agg(F.collect_list(F.struct("f", "n", "ts", "v")).alias("_all"))

    def of(name: str) -> F.Column:
        return F.filter("_all", lambda x: x["f"] == F.lit(name))

    cols = [F.col("user_id")]
    for name, n in recent.items():
        mine = of(name)
        ordered = F.sort_array(
            F.transform(mine, lambda x: F.struct(x["ts"].alias("ts"), x["v"].alias("v"))), asc=False
        )
        cols.append(F.slice(F.transform(ordered, lambda x: x["v"]), 1, n).alias(name))
    for name, n in top.items():
        mine = of(name)
        ordered = F.sort_array(
            F.transform(mine, lambda x: F.struct(x["n"].alias("n"), x["ts"].alias("ts"), x["v"].alias("v"))),
            asc=False,
        )
        cols.append(F.slice(F.transform(ordered, lambda x: x["v"]), 1, n).alias(name))
    return per_user.select(*cols)


def split_expr(salt: str, eval_fraction: float) -> F.Column:
    """'train' | 'eval' from a salted hash of user_id; stable across dates and runs."""
    bucket = F.pmod(F.xxhash64(F.lit(salt), F.col("user_id")), F.lit(10000))
    return F.when(bucket < F.lit(round(eval_fraction * 10000)), F.lit("eval")).otherwise(F.lit("train"))


def compile_day(spark: SparkSession, cfg: CompileConfig, x: date) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Build (examples, preset_pool, cached events) DataFrames for anchor date ``x``.

    The events of the date's window are persisted because every feature reads them; the caller
    unpersists the third element once the first two are written.
    """
    layout = RawLayout(Path(cfg.data))
    cutoff = datetime(x.year, x.month, x.day) + timedelta(days=1)  # features: ts < cutoff (UTC)
    label_end = cutoff + timedelta(days=cfg.label_days)
    longest = cfg.longest_lookback_days()
    lo_dt = x - timedelta(days=longest + 1)
    hi_dt = x + timedelta(days=cfg.label_days + 1)

    events = read_raw(spark, layout, "events").where(
        F.col("dt").cast("date").between(F.lit(lo_dt), F.lit(hi_dt))
    )
    if cfg.validate:  # on the files themselves, so the error can name the file
        _check_events(events, layout.table("events"))
    events = events.persist()
    advertisers = read_raw(spark, layout, "advertisers")
    daily = (
        read_raw(spark, layout, "advertiser_daily")
        .where(F.col("dt").cast("date").between(F.lit(x), F.lit(hi_dt)))
        .withColumn("dt", F.col("dt").cast("date"))
    )
    users = read_raw(spark, layout, "users")

    def since(days: int) -> F.Column:
        return (F.col("ts") >= F.lit(cutoff - timedelta(days=days))) & (F.col("ts") < F.lit(cutoff))

    past = events.where(F.col("ts") < F.lit(cutoff))
    is_conv = F.col("event_type").isin(*CONVERSION_EVENTS)

    # Serving population (V1).
    served = past.where(is_conv & since(cfg.serving_lookback_days)).select("user_id").distinct()
    pop = served.join(users, "user_id", "inner")
    if cfg.countries:
        pop = pop.where(F.col("country").isin(*cfg.countries))

    # Label: first high-priority conversion in (x, x+7d] with an active advertiser spending that day.
    spending = daily.where(F.col("spend") > 0).select(F.col("dt").alias("_day"), "advertiser_id")
    active = advertisers.where(F.col("is_active")).select(
        "advertiser_id", F.col("name").alias("label_advertiser_name")
    )
    cand = (
        events.where(
            is_conv
            & (F.col("ts") >= F.lit(cutoff))
            & (F.col("ts") < F.lit(label_end))
            & F.col("conversion_type").isin(*cfg.label_conversion_types)
            & F.col("advertiser_id").isNotNull()
        )
        .withColumn("_day", F.to_date("ts"))
        .join(spending, ["_day", "advertiser_id"], "inner")
        .join(active, "advertiser_id", "inner")
    )
    w = Window.partitionBy("user_id").orderBy(F.col("ts").asc(), F.col("advertiser_id").asc())
    labels = (
        cand.withColumn("_rn", F.row_number().over(w))
        .where(F.col("_rn") == 1)
        .select(
            "user_id",
            F.col("advertiser_id").alias("label_advertiser_id"),
            "label_advertiser_name",
            F.col("ts").alias("label_ts"),
            F.col("conversion_type").alias("label_conversion_type"),
        )
    )

    # Features (look back from x only).
    p = past.join(pop.select("user_id"), "user_id", "left_semi").withColumn(
        "category", F.regexp_replace(F.col("category"), r"\s*>\s*", " / ")
    )
    conv = p.where(is_conv & since(cfg.conversion_lookback_days))
    et = F.col("event_type")
    conv_win, search_win = since(cfg.conversion_lookback_days), since(cfg.search_lookback_days)
    cat_win = since(cfg.category_lookback_days)
    specs = [
        ("attributed_conversions", (et == "attributed_conversion") & conv_win, "text"),
        ("matched_conversions", (et == "matched_conversion") & conv_win, "text"),
        ("onsite_searches", (et == "onsite_search") & search_win, "text"),
        ("offsite_searches", (et == "offsite_search") & search_win, "text"),
        ("offsite_urls", (et == "offsite_url") & since(cfg.url_lookback_days), "text"),
        (
            "top_categories",
            et.isin(
                "attributed_conversion",
                "matched_conversion",
                "onsite_search",
                "offsite_search",
                "offsite_url",
            )
            & cat_win,
            "category",
        ),
        (
            "top_brands",
            et.isin("attributed_conversion", "matched_conversion", "offsite_search", "offsite_url") & cat_win,
            "brand",
        ),
    ]
    recent = {name: cfg.max_items for name, _, _ in specs[:5]}
    feats = [
        _field_lists(
            p,
            specs,
            recent,
            {"top_categories": cfg.top_k_categories, "top_brands": cfg.top_k_brands},
            cfg.max_chars,
        )
    ]
    act = (
        conv.where(F.col("advertiser_id").isNotNull())
        .groupBy("user_id", "advertiser_id")
        .agg(F.max("ts").alias("_ts"))
        .join(
            F.broadcast(advertisers.where(F.col("is_active")).select("advertiser_id", "name")),
            "advertiser_id",
        )
        .groupBy("user_id")
        .agg(
            F.slice(
                F.sort_array(F.collect_list(F.struct("_ts", "advertiser_id", "name")), asc=False),
                1,
                cfg.max_items,
            ).alias("_a")
        )
        .select(
            "user_id",
            F.transform("_a", lambda s: s["name"]).alias("active_advertisers"),
            F.transform("_a", lambda s: s["advertiser_id"]).alias("active_advertiser_ids"),
        )
    )
    counts = p.groupBy("user_id").agg(
        F.sum(((F.col("event_type") == "attributed_conversion") & conv_win).cast("long")).alias(
            "n_attributed"
        ),
        F.sum(((F.col("event_type") == "matched_conversion") & conv_win).cast("long")).alias("n_matched"),
        F.max("ts").alias("last_event_ts"),
    )

    ex = pop.select("user_id", "gender", "age", "user_state", "country")
    for f in [*feats, act, counts]:
        ex = ex.join(f, "user_id", "left")
    ex = ex.join(labels, "user_id", "left")
    list_cols = [c for c in EXAMPLE_SCHEMA.names if str(EXAMPLE_SCHEMA.field(c).type).startswith("list")]
    for c in list_cols:
        ex = ex.withColumn(c, F.coalesce(F.col(c), F.array().cast(ex.schema[c].dataType)))
    ex = (
        ex.withColumn("n_attributed", F.coalesce("n_attributed", F.lit(0)).cast("long"))
        .withColumn("n_matched", F.coalesce("n_matched", F.lit(0)).cast("long"))
        .withColumn("anchor_date", F.lit(x))
        .withColumn("split", split_expr(cfg.split_salt, cfg.eval_fraction))
        .withColumn("in_v0", (F.col("n_attributed") >= cfg.v0_min) & (F.col("n_matched") >= cfg.v0_min))
        .withColumn("age", F.col("age").cast("int"))
    )
    ex = ex.select(*EXAMPLE_SCHEMA.names)

    pool = (
        daily.where((F.col("dt") == F.lit(x)) & (F.col("spend") > 0))
        .join(advertisers.where(F.col("is_active")).select("advertiser_id", "name"), "advertiser_id")
        .withColumn(
            "rank", F.row_number().over(Window.orderBy(F.col("revenue").desc(), F.col("advertiser_id")))
        )
        .where(F.col("rank") <= cfg.preset_pool_size)
        .select(F.lit(x).alias("anchor_date"), F.col("rank").cast("int"), "advertiser_id", "name", "revenue")
    )
    return ex, pool, events


def compile_examples(cfg: CompileConfig, spark: SparkSession | None = None) -> dict:
    """Compile examples for every anchor date in ``cfg`` and write them with a summary.

    Args:
        cfg: inputs, anchor dates, lookbacks and limits; see ``CompileConfig``.
        spark: an existing session (tests share one); by default one is built from ``cfg.spark``.

    Returns:
        The summary dict also written to ``<out>/summary.json``.
    """
    t0 = time.perf_counter()
    spark = spark or get_spark(cfg.spark)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for x in cfg.anchor_dates:
        ex, pool, cached = compile_day(spark, cfg, x)
        part = f"anchor_date={x.isoformat()}"
        ex.drop("anchor_date").write.mode("overwrite").parquet(str(out / "examples" / part))
        pool.drop("anchor_date").coalesce(1).write.mode("overwrite").parquet(str(out / "preset_pool" / part))
        cached.unpersist()
        log.info("compiled anchor date %s", x)
    seconds = time.perf_counter() - t0
    summary = summarize(out, asdict(cfg))
    summary["seconds"] = round(seconds, 2)
    if cfg.tokenizer:
        for x in cfg.anchor_dates:
            summary["dates"][x.isoformat()]["prompt_tokens"] = prompt_length_stats(
                out, x, cfg.tokenizer, cfg.prompt_sample
            )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary
