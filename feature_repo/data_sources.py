"""Offline sources of the adprior feature repo, for either Feast offline store.

Every table is a folder of parquet files under ``data/offline/<table>/`` (one file per partition,
e.g. ``dt=2026-06-15.parquet``), written by ``adprior.store.write_partition`` (feature tables and the
heuristic control's ``heuristic_predictions``) and by batch inference (``llm_predictions``).
``created_timestamp`` breaks ties between two rows of one entity with the same ``event_timestamp``
(the later write wins).

The source class follows the offline store of the yaml in use, chosen by the environment variable
``ADPRIOR_OFFLINE_STORE`` when Feast imports this file (``feast apply``; ``adprior.store.apply``
sets it from ``StoreConfig.offline``):

- ``file`` (default): ``FileSource`` for the file (dask) offline store (``feature_store.yaml``,
  ``feature_store.redis.yaml``). Paths are relative: Feast resolves them against the repo path, so a
  copy of this folder works anywhere.
- ``spark``: ``SparkSource`` for the Spark offline store (``feature_store.spark.yaml``,
  ``feature_store.spark-redis.yaml``). Spark resolves a relative path against the driver's working
  directory, not the repo, so the path is made absolute from this file's folder when Feast imports
  it (the registry then holds the absolute path of this repo's ``data/offline/<table>``). With a
  standalone or cluster master every executor reads that path itself: keep the repo on a
  filesystem mounted at the same path on every node (``adprior.store`` writes the partitions there
  and reads their keys directly with pyarrow).

Same source names, same tables, same timestamps either way; only the reader differs. Re-run
``feast apply`` after switching (each yaml has its own registry, so both can coexist).
"""

import os
import warnings
from pathlib import Path

from feast import Field, FileSource, RequestSource
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.types import Int64

OFFLINE_STORE = (os.environ.get("ADPRIOR_OFFLINE_STORE") or "file").strip().lower()
if OFFLINE_STORE not in ("file", "spark"):
    raise ValueError(f"ADPRIOR_OFFLINE_STORE={OFFLINE_STORE!r}: expected 'file' or 'spark'")
REPO_DIR = Path(__file__).resolve().parent  # Feast imports this file from the repo folder


def _source(table: str, description: str) -> DataSource:
    """A parquet-folder source for one offline table (FileSource or SparkSource, see module doc)."""
    common = {
        "name": f"{table}_source",
        "timestamp_field": "event_timestamp",
        "created_timestamp_column": "created_timestamp",
        "description": description,
    }
    if OFFLINE_STORE == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        with warnings.catch_warnings():  # "The spark data source API is an experimental feature"
            warnings.simplefilter("ignore", RuntimeWarning)
            return SparkSource(
                path=str(REPO_DIR / "data" / "offline" / table), file_format="parquet", **common
            )
    return FileSource(path=f"data/offline/{table}", file_format=ParquetFormat(), **common)


user_profile_source = _source("user_profile", "Raw `users` table; event_timestamp = signup date 00:00 UTC.")
user_behavior_source = _source(
    "user_behavior",
    "Compiled examples of anchor date x; event_timestamp = x + 1 day 00:00 UTC (events before it).",
)
llm_predictions_source = _source(
    "llm_predictions",
    "Batch-inference predictions (adprior.contracts.PREDICTION_SCHEMA); "
    "event_timestamp = inference date + 1 day 00:00 UTC.",
)
heuristic_predictions_source = _source(
    "heuristic_predictions",
    "The heuristic control's lists (history + brands + co-occurrence + popularity; adprior.controls) in "
    "the same PREDICTION_SCHEMA; event_timestamp = inference date + 1 day 00:00 UTC.",
)
advertiser_stats_source = _source(
    "advertiser_stats",
    "advertiser_daily joined with advertisers, one row per advertiser and day dt; "
    "event_timestamp = dt + 1 day 00:00 UTC (a day's stats are known when it ends).",
)

# The (user, candidate advertiser) pair being scored. The on-demand views read the candidate from
# this request field rather than from the `advertiser_id` join key: see features.py.
candidate_request = RequestSource(
    name="candidate",
    schema=[Field(name="candidate_advertiser_id", dtype=Int64)],
    description="The candidate advertiser of a ranking request (same value as advertiser_id).",
)
