"""Shared fixtures: one real local Spark session per test run, and raw-table writers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from llm_predictor.spark import SparkConfig, get_spark

    s = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="2g"))
    yield s
    s.stop()


def ts(text: str) -> datetime:
    """'2026-06-10 23:59:59' -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def write_raw(root: Path, tables: dict[str, list[dict]]) -> Path:
    """Write hand-built raw tables (lists of row dicts) under ``root`` per the contract."""
    from world.schema import PARTITIONED, SCHEMAS, conform, validate_table

    for name, rows in tables.items():
        schema = SCHEMAS[name]
        cols = {f: [r.get(f) for r in rows] for f in schema.names}
        t = conform(pa.table({f: pa.array(cols[f], type=schema.field(f).type) for f in schema.names}), name)
        validate_table(t, name)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if name in PARTITIONED:
            if name == "events":
                dts = [r["ts"].strftime("%Y-%m-%d") for r in rows]
            else:
                dts = [r["dt"].isoformat() for r in rows]
            t = t.append_column("dt", pa.array(dts))
            pads.write_dataset(t, folder, format="parquet", partitioning=["dt"], partitioning_flavor="hive",
                               existing_data_behavior="overwrite_or_ignore")
        else:
            pq.write_table(t, folder / "part-0.parquet")
    return root
