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
:mod:`llm_predictor.data.summary` computes the summary. The Spark query is
:mod:`llm_predictor.data.compile_query`: one scan and one shuffle of the events for all anchor dates.
Each anchor date's folders are written to a staging folder first and replace the old ones only when
every date is written, so a failed run leaves the previous output as it was.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from adprior.io import SparkConfig, get_spark
from llm_predictor.data.compile_query import (
    CONTRACT_MARK,
    examples_frame,
    pool_frame,
    read_tables,
    split_expr,
)
from llm_predictor.data.summary import prompt_length_stats, summarize, summary_markdown
from world.schema import HIGH_PRIORITY_TYPES, ContractError

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


__all__ = ["CompileConfig", "compile_examples", "split_expr"]


@contextmanager
def _contract_errors() -> Iterator[None]:
    """Turn the Spark error raised by the contract check of the events (compile_query) into ContractError."""
    try:
        yield
    except Exception as e:  # py4j / pyspark wrap the task's error; its message carries the marked text
        m = re.search(re.escape(CONTRACT_MARK[0]) + "(.*?)" + re.escape(CONTRACT_MARK[1]), str(e), re.S)
        if m is None:
            raise
        raise ContractError(m.group(1)) from None


def _write(frame: DataFrame, staging: Path, coalesce: int | None = None) -> None:
    """Write ``frame`` partitioned by anchor_date under ``staging``."""
    if coalesce:
        frame = frame.coalesce(coalesce)
    frame.write.partitionBy("anchor_date").mode("overwrite").parquet(str(staging))


def _publish(spark: SparkSession, frame: DataFrame, staging: Path, out: Path, anchors: list[date]) -> None:
    """Move each anchor's folder from ``staging`` to ``out``, replacing the old one; an anchor without
    rows gets an empty parquet file with the schema (a compiled date always has its folder)."""
    for x in anchors:
        part = f"anchor_date={x.isoformat()}"
        src, dst = staging / part, out / part
        if not src.exists():
            schema = frame.drop("anchor_date").schema
            spark.createDataFrame([], schema).coalesce(1).write.parquet(str(src))
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)


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
    anchors = list(dict.fromkeys(cfg.anchor_dates))
    raw = read_tables(spark, cfg)
    ex, pool = examples_frame(raw, cfg, anchors), pool_frame(raw, cfg, anchors)
    staging = out / f"_staging-{uuid.uuid4().hex}"  # '_': readers of out/ skip it
    try:
        with _contract_errors():
            _write(ex, staging / "examples")
        _write(pool, staging / "preset_pool", coalesce=1)
        for table, frame in (("examples", ex), ("preset_pool", pool)):
            _publish(spark, frame, staging / table, out / table, anchors)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("compiled anchor dates %s", ", ".join(x.isoformat() for x in anchors))
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
