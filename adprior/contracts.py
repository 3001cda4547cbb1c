"""The contracts of the derived tables (design.md "Examples", "predictions table", "Feast"): their pyarrow
schemas, and :func:`conform_table`, which holds rows of an offline feature-store table to its schema.

- ``EXAMPLE_SCHEMA``: what compilation writes and prompts read. One row per (user, anchor date). List
  columns are recency-ordered (newest first), de-duplicated and already cut to
  ``CompileConfig.max_items`` entries of at most ``max_chars`` characters; the prompt builder then cuts
  them further to a token budget with the model's tokenizer.
- ``PRESET_POOL_SCHEMA``: the advertiser pool of an anchor date.
- ``PREDICTION_SCHEMA``: what batch inference writes into the Feast offline store, and the heuristic control
  too (``PREDICTION_TABLES``: one offline table per predictor).
- ``FEATURE_TABLE_SCHEMAS`` / ``TABLE_SCHEMAS`` / ``KEY_COLUMNS``: every offline table of the Feast repo
  (``feature_repo/``; its feature views must agree with them: tests/adprior/test_contracts.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


# ------------------------------------------------------------------------------ offline feature tables

TIMESTAMP = pa.timestamp("us", tz="UTC")  # every event / created timestamp of the offline tables

# Offline feature tables written by adprior.store (llm_predictions is written by batch inference with
# PREDICTION_SCHEMA). Every table has event_timestamp (when the row becomes known) and
# created_timestamp (when it was written; breaks ties between rows of one event time).
FEATURE_TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "user_profile": pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_timestamp", TIMESTAMP),  # signup date 00:00 UTC
            ("created_timestamp", TIMESTAMP),
            ("gender", pa.string()),
            ("age", pa.int64()),
            ("user_state", pa.string()),
            ("country", pa.string()),
        ]
    ),
    "user_behavior": pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_timestamp", TIMESTAMP),  # anchor date x + 1 day 00:00 UTC: built from events before it
            ("created_timestamp", TIMESTAMP),
            ("anchor_date", pa.date32()),
            *(EXAMPLE_SCHEMA.field(c) for c in ("n_attributed", "n_matched")),
            ("n_active_advertisers", pa.int64()),  # len(active_advertiser_ids)
            # the examples' behaviour lists and last event time, with the examples' types
            *(
                EXAMPLE_SCHEMA.field(c)
                for c in ("active_advertiser_ids", "active_advertisers", *BEHAVIOR_FIELDS, "last_event_ts")
            ),
        ]
    ),
    "advertiser_stats": pa.schema(
        [
            ("advertiser_id", pa.int64()),
            ("event_timestamp", TIMESTAMP),  # dt + 1 day 00:00 UTC: a day's stats are known when it ends
            ("created_timestamp", TIMESTAMP),
            ("dt", pa.date32()),
            ("spend", pa.float64()),
            ("revenue", pa.float64()),
            ("bid_type", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),  # '>'-separated path
            ("brand_group", pa.string()),
            ("is_active", pa.bool_()),
        ]
    ),
}
# The predictors whose advertiser lists the consumers read, each its own offline table of PREDICTION_SCHEMA
# (issue 18): the LLM (batch inference) and the heuristic control (adprior.controls: history + brands +
# co-occurrence + popularity, its own model_version). Feast reads each through the same views
# (feature_repo/features.py: <predictor>_advertiser_predictions, <predictor>_user_interests, ...).
PREDICTION_TABLES: dict[str, str] = {"llm": "llm_predictions", "heuristic": "heuristic_predictions"}
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    **FEATURE_TABLE_SCHEMAS,
    **dict.fromkeys(PREDICTION_TABLES.values(), PREDICTION_SCHEMA),
}
# Columns that may never be null; (entity, event_timestamp) must also be unique within a partition.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "user_profile": ("user_id", "event_timestamp"),
    "user_behavior": ("user_id", "event_timestamp"),
    "advertiser_stats": ("advertiser_id", "event_timestamp"),
    **dict.fromkeys(PREDICTION_TABLES.values(), ("user_id", "event_timestamp")),
}
_NOT_NULL_EXTRA = ("created_timestamp",)


# ----------------------------------------------------------------------------------------- validation


def _prepare_series(s: pd.Series, typ: pa.DataType) -> pd.Series:
    """Pandas-side normalisation before conversion: timestamps to UTC, microseconds."""
    if pa.types.is_timestamp(typ) and pd.api.types.is_datetime64_any_dtype(s):
        s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return s.dt.floor("us")
    return s


def _first_bad(values: list[Any], typ: pa.DataType) -> tuple[int, Any, str]:
    """Index, value and error of the first element that does not convert to ``typ``."""
    for i, v in enumerate(values):
        try:
            pa.array([v], type=typ, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            return i, v, str(exc)
    return -1, None, ""


def _column(table: str, name: str, values: Any, typ: pa.DataType) -> pa.Array:
    """Convert one column to ``typ`` or raise ValueError naming table, column and first bad row."""
    if len(values) == 0:  # an empty pandas column has no meaningful dtype
        return pa.array([], type=typ)
    try:
        if isinstance(values, pa.ChunkedArray | pa.Array):
            arr = values.cast(typ)
            return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        return pa.array(_prepare_series(values, typ), type=typ, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raw = values.to_pylist() if isinstance(values, pa.ChunkedArray | pa.Array) else list(values)
        row, value, err = _first_bad(raw, typ)
        where = f"row {row}: value {value!r}" if row >= 0 else "a row"
        raise ValueError(
            f"table {table!r}, column {name!r}, {where} does not convert to {typ}: {err or exc}"
        ) from exc


def conform_table(table: str, df: pd.DataFrame | pa.Table) -> pa.Table:
    """Cast ``df`` to the schema of offline table ``table`` (column order included) and validate it.

    ``created_timestamp`` may be omitted (it is set to now). Checks: no missing or unexpected
    columns, every value converts to its column type, no null in key columns or inside lists, and no
    two rows with the same (entity, event_timestamp).

    Raises:
        ValueError: naming the table, the column and the first offending row.
    """
    if table not in TABLE_SCHEMAS:
        raise KeyError(f"unknown offline table {table!r}; known: {sorted(TABLE_SCHEMAS)}")
    schema = TABLE_SCHEMAS[table]
    cols = list(df.column_names) if isinstance(df, pa.Table) else [str(c) for c in df.columns]
    n = df.num_rows if isinstance(df, pa.Table) else len(df)
    extra = sorted(set(cols) - set(schema.names))
    if extra:
        raise ValueError(f"table {table!r}: unexpected columns {extra}; expected {schema.names}")
    arrays = []
    for field in schema:
        if field.name not in cols:
            if field.name == "created_timestamp":
                arrays.append(pa.array([datetime.now(UTC)] * n, type=field.type))
                continue
            raise ValueError(
                f"table {table!r}, column {field.name!r}: missing (expected columns {schema.names})"
            )
        values = df.column(field.name) if isinstance(df, pa.Table) else df[field.name]
        arrays.append(_column(table, field.name, values, field.type))
    out = pa.Table.from_arrays(arrays, schema=schema)
    for name in (*KEY_COLUMNS[table], *_NOT_NULL_EXTRA):
        nulls = pc.is_null(out.column(name))
        if pc.any(nulls).as_py():
            raise ValueError(
                f"table {table!r}, column {name!r}, row {pc.index(nulls, True).as_py()}: null in a key column"
            )
    for field in schema:
        if pa.types.is_list(field.type):
            col = out.column(field.name).combine_chunks()
            bad = pc.is_null(pc.list_flatten(col))
            if pc.any(bad).as_py():
                row = pc.list_parent_indices(col)[pc.index(bad, True).as_py()].as_py()
                raise ValueError(f"table {table!r}, column {field.name!r}, row {row}: null inside the list")
    keys = out.select(list(KEY_COLUMNS[table])).to_pandas()
    dup = keys.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(
            f"table {table!r}, columns {list(KEY_COLUMNS[table])}, row {row}: duplicate key "
            f"{tuple(keys.iloc[row])} (one row per entity and event_timestamp per partition)"
        )
    return out
