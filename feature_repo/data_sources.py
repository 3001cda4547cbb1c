"""Offline sources of the adprior feature repo.

Every table is a folder of parquet files under ``data/offline/<table>/`` (one file per partition,
e.g. ``dt=2026-06-15.parquet``), written by ``adprior.store.write_partition`` (feature tables) and by
batch inference (``llm_predictions``). Paths are relative: Feast resolves them against the repo
path, so a copy of this folder works anywhere. ``created_timestamp`` breaks ties between two rows
of one entity with the same ``event_timestamp`` (the later write wins).
"""

from feast import Field, FileSource, RequestSource
from feast.data_format import ParquetFormat
from feast.types import Int64


def _source(table: str, description: str) -> FileSource:
    """A parquet-folder source for one offline table."""
    return FileSource(
        name=f"{table}_source",
        path=f"data/offline/{table}",
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description=description,
    )


user_profile_source = _source(
    "user_profile", "Raw `users` table; event_timestamp = signup date 00:00 UTC."
)
user_behavior_source = _source(
    "user_behavior",
    "Compiled examples of anchor date x; event_timestamp = x + 1 day 00:00 UTC (events before it).",
)
llm_predictions_source = _source(
    "llm_predictions",
    "Batch-inference predictions (llm_predictor.examples.PREDICTION_SCHEMA); "
    "event_timestamp = inference date + 1 day 00:00 UTC.",
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
