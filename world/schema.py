"""The raw-table input contract (design.md "Raw tables"): one pyarrow schema per table.

Every producer (the simulator, the Amazon adapter, a user's own data adapter) writes these tables
under a data root, one folder per table, hive-partitioned by ``dt=YYYY-MM-DD`` where the table has
time. Every consumer (Spark compilation, ranking, retrieval) reads them. ``validate_table`` names
the table, the column and the first offending row when a table breaks the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

EVENT_TYPES: tuple[str, ...] = (
    "onsite_search",
    "offsite_search",
    "offsite_url",
    "attributed_conversion",
    "matched_conversion",
    "impression",
    "click",
    "ad_conversion",
    "view_conversion",
)
# Event types that are conversions (they carry advertiser_id and conversion_type).
CONVERSION_EVENTS: tuple[str, ...] = (
    "attributed_conversion",
    "matched_conversion",
    "ad_conversion",
    "view_conversion",
)
# Conversion types by priority (lower number = higher priority). Only types with priority
# <= HIGH_PRIORITY_MAX make labels (paper 3.2.1: "only high-priority conversion types").
CONVERSION_PRIORITY: dict[str, int] = {
    "purchase": 0,
    "checkout": 1,
    "signup": 2,
    "lead": 3,
    "add_to_cart": 4,
    "page_visit": 5,
}
HIGH_PRIORITY_MAX = 1
HIGH_PRIORITY_TYPES: tuple[str, ...] = tuple(
    t for t, p in CONVERSION_PRIORITY.items() if p <= HIGH_PRIORITY_MAX
)
USER_STATES: tuple[str, ...] = ("new", "casual", "core", "resurrected")

SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema(
        [
            ("user_id", pa.int64()),
            ("age", pa.int32()),
            ("gender", pa.string()),
            ("user_state", pa.string()),
            ("country", pa.string()),
            ("signup_date", pa.date32()),
        ]
    ),
    "advertisers": pa.schema(
        [
            ("advertiser_id", pa.int64()),
            ("name", pa.string()),
            ("aliases", pa.list_(pa.string())),
            ("domain", pa.string()),
            ("brand_group", pa.string()),
            ("category", pa.string()),
            ("is_active", pa.bool_()),
        ]
    ),
    "advertiser_daily": pa.schema(
        [
            ("advertiser_id", pa.int64()),
            ("spend", pa.float64()),
            ("revenue", pa.float64()),
            ("bid_type", pa.string()),
        ]
    ),
    "items": pa.schema(
        [
            ("item_id", pa.int64()),
            ("advertiser_id", pa.int64()),
            ("title", pa.string()),
            ("category", pa.string()),
            ("price", pa.float64()),
        ]
    ),
    "events": pa.schema(
        [
            ("user_id", pa.int64()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("event_type", pa.string()),
            ("text", pa.string()),
            ("advertiser_id", pa.int64()),
            ("item_id", pa.int64()),
            ("category", pa.string()),
            ("brand", pa.string()),
            ("conversion_type", pa.string()),
            ("value", pa.float64()),
            ("duration_s", pa.float64()),
        ]
    ),
}
# Tables partitioned by day: folder dt=YYYY-MM-DD; the dt column lives only in the path.
PARTITIONED: frozenset[str] = frozenset({"advertiser_daily", "events"})
NOT_NULL: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "advertisers": ("advertiser_id", "name", "is_active"),
    "advertiser_daily": ("advertiser_id", "spend", "revenue"),
    "items": ("item_id", "advertiser_id"),
    "events": ("user_id", "ts", "event_type"),
}


class ContractError(ValueError):
    """A raw table breaks the input contract; the message names table, column and row."""


@dataclass(frozen=True)
class RawLayout:
    """Where the raw tables of one data root live, and the one pyarrow reader of them."""

    root: Path  # data root: one sub-folder per table

    def table(self, name: str) -> Path:
        if name not in SCHEMAS:
            raise KeyError(f"unknown raw table {name!r}; known: {sorted(SCHEMAS)}")
        return self.root / name

    def read(self, name: str, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """One raw table as pyarrow; hive ``dt=`` partitions are read with ``dt`` as a string column."""
        path = self.table(name)
        if not path.exists():
            raise FileNotFoundError(f"raw table {name!r} not found under {self.root} (expected {path})")
        part = pads.partitioning(pa.schema([("dt", pa.string())]), flavor="hive")
        return pads.dataset(path, format="parquet", partitioning=part).to_table(
            columns=columns, filter=filter
        )

    @property
    def truth(self) -> Path:
        """Ground truth of a simulated world; no model stage may read it."""
        return self.root.parent / (self.root.name + "_truth")


def conform(table: pa.Table, name: str) -> pa.Table:
    """Cast ``table`` to the contract schema of ``name`` (column order included).

    Missing nullable columns are added as nulls; extra columns are an error.
    """
    schema = SCHEMAS[name]
    if name in PARTITIONED and "dt" in table.column_names:
        table = table.drop(["dt"])
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise ContractError(f"table {name!r}: unexpected columns {sorted(extra)}")
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ContractError(
                    f"table {name!r}, column {field.name!r}: cannot cast {col.type} to {field.type}: {exc}"
                ) from exc
        else:
            col = pa.nulls(len(table), field.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def validate_table(table: pa.Table, name: str) -> None:
    """Raise ContractError naming the column and first bad row if ``table`` breaks the contract."""
    table = conform(table, name)
    for col in NOT_NULL[name]:
        nulls = pc.is_null(table.column(col))
        if pc.any(nulls).as_py():
            row = pc.index(nulls, True).as_py()
            raise ContractError(f"table {name!r}, column {col!r}, row {row}: null in a required column")
    if name == "events":
        et = table.column("event_type")
        bad = pc.invert(pc.is_in(et, value_set=pa.array(EVENT_TYPES)))
        if pc.any(bad).as_py():
            row = pc.index(bad, True).as_py()
            raise ContractError(
                f"table 'events', column 'event_type', row {row}: unknown event type {et[row].as_py()!r}"
            )
        ct = table.column("conversion_type")
        bad = pc.and_(pc.is_valid(ct), pc.invert(pc.is_in(ct, value_set=pa.array(list(CONVERSION_PRIORITY)))))
        if pc.any(bad).as_py():
            row = pc.index(bad, True).as_py()
            raise ContractError(
                f"table 'events', column 'conversion_type', row {row}: unknown type {ct[row].as_py()!r}"
            )


# A category path: the raw advertisers / items / events tables write 'Beauty > Skincare'; compiled examples
# (top_categories) and the answer grammar's interests render the same path 'Beauty / Skincare'.
CATEGORY_SEPARATOR = re.compile(r"[>/]")


def category_levels(path: Any) -> tuple[str, ...]:
    """The levels of a category path, the one parser of the format: ``'Beauty > Skincare'`` and
    ``'Beauty / Skincare'`` -> ``('Beauty', 'Skincare')``. Whitespace inside a level is collapsed, case is
    kept (callers fold it as they need), empty levels are dropped; anything but a string (None, NaN) has none."""
    if not isinstance(path, str):
        return ()
    return tuple(" ".join(level.split()) for level in CATEGORY_SEPARATOR.split(path) if level.strip())
