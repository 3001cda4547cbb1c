"""The examples-table contract (design.md "Examples"): what compilation writes and prompts read.

One row per (user, anchor date). List columns are recency-ordered (newest first), de-duplicated
and already cut to ``CompileConfig.max_items`` entries of at most ``max_chars`` characters; the
prompt builder then cuts them further to a token budget with the model's tokenizer.
"""

from __future__ import annotations

import pyarrow as pa

# The per-user behaviour lists of paper 3.2.3, in prompt order (Appendix A "- Behavior:").
BEHAVIOR_FIELDS: tuple[str, ...] = (
    "attributed_conversions",
    "matched_conversions",
    "onsite_searches",
    "offsite_searches",
    "offsite_urls",
    "top_categories",
    "top_brands",
)
PROFILE_FIELDS: tuple[str, ...] = ("gender", "age", "user_state")
# Every list-valued text feature a prompt can contain (advertiser pool first, as in Appendix A).
LIST_FIELDS: tuple[str, ...] = ("active_advertisers", *BEHAVIOR_FIELDS)

EXAMPLE_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("anchor_date", pa.date32()),
        ("split", pa.string()),  # 'train' | 'eval', by a salted hash of user_id
        ("in_v0", pa.bool_()),  # matched and attributed sequences each have >= v0_min entries
        ("label_advertiser_id", pa.int64()),  # null when no qualifying conversion in (x, x+7d]
        ("label_advertiser_name", pa.string()),
        ("label_ts", pa.timestamp("us", tz="UTC")),
        ("label_conversion_type", pa.string()),
        ("gender", pa.string()),
        ("age", pa.int32()),
        ("user_state", pa.string()),
        ("country", pa.string()),
        ("active_advertisers", pa.list_(pa.string())),  # names, newest conversion first
        ("active_advertiser_ids", pa.list_(pa.int64())),  # same order as active_advertisers
        ("attributed_conversions", pa.list_(pa.string())),
        ("matched_conversions", pa.list_(pa.string())),
        ("onsite_searches", pa.list_(pa.string())),
        ("offsite_searches", pa.list_(pa.string())),
        ("offsite_urls", pa.list_(pa.string())),
        ("top_categories", pa.list_(pa.string())),
        ("top_brands", pa.list_(pa.string())),
        ("n_attributed", pa.int64()),  # raw counts in the conversion lookback (V0 filter)
        ("n_matched", pa.int64()),
        ("last_event_ts", pa.timestamp("us", tz="UTC")),  # newest event at or before x
    ]
)

# The preset advertiser pool of an anchor date (paper 3.2.3 "Advertiser pools"): top advertisers
# by revenue that day with spend > 0; identical for every user of that date.
PRESET_POOL_SCHEMA = pa.schema(
    [
        ("anchor_date", pa.date32()),
        ("rank", pa.int32()),  # 1 = highest revenue
        ("advertiser_id", pa.int64()),
        ("name", pa.string()),
        ("revenue", pa.float64()),
    ]
)

# The predictions table (design.md "predictions table"): one row per (user, inference date), written by
# batch inference into the Feast offline store (``<feature repo>/data/offline/llm_predictions/``) and
# read by the ``llm_advertiser_predictions`` and ``llm_user_interests`` feature views. The event
# timestamp is the end of the anchor day (anchor date + 1 day, 00:00 UTC): the prediction uses events
# with ts < that instant and only exists from then on, so point-in-time joins never see it earlier.
PREDICTION_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),  # anchor_date + 1 day, 00:00 UTC
        ("created_timestamp", pa.timestamp("us", tz="UTC")),  # wall-clock time the row was written
        ("anchor_date", pa.date32()),  # the inference date x (features use events before x + 1 day)
        ("advertiser_ids", pa.list_(pa.int64())),  # resolved, de-duplicated, model order (<= 20)
        ("advertiser_names", pa.list_(pa.string())),  # canonical names of advertiser_ids, same order
        ("raw_names", pa.list_(pa.string())),  # names as the model wrote them (parsed, de-duplicated)
        ("interests", pa.list_(pa.string())),  # <= 5 interests as written by the model
        ("model_version", pa.string()),  # '<model folder name>@<short hash of its config + weights>'
        ("engine", pa.string()),  # 'transformers' | 'vllm'
        # 'ok' | 'partial' | 'unparseable' (parser) | 'truncated' | 'invalid' | 'empty_pool' | 'short_pool' (decoder)
        ("status", pa.string()),
        ("n_unresolved", pa.int64()),  # written names that resolve to no advertiser (hallucinations)
        ("raw_output", pa.string()),  # the completion text, kept for audit and re-parsing
    ]
)
