"""Reading a compile output folder (:mod:`llm_predictor.data.compile`): the examples table and the preset pools.

Spark-free: every stage after compilation (training, inference, evaluation, the nightly job) reads the
compiled examples through these functions with pyarrow and pandas.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq


def load_examples(out: Path, anchor_date: date | None = None) -> pd.DataFrame:
    """Read compiled examples (all dates, or one) as pandas, typed per EXAMPLE_SCHEMA."""
    ds = pads.dataset(Path(out) / "examples", format="parquet", partitioning="hive")
    table = ds.to_table(
        filter=None if anchor_date is None else (pads.field("anchor_date") == anchor_date.isoformat())
    )
    df = table.to_pandas()
    df["anchor_date"] = df["anchor_date"].astype(str).map(date.fromisoformat)
    return df


def read_preset_pool(out: Path, anchor_date: date) -> pd.DataFrame:
    """The preset pool of ``anchor_date`` (rank, advertiser_id, name, revenue), best first; empty if absent."""
    path = Path(out) / "preset_pool" / f"anchor_date={anchor_date.isoformat()}"
    if not path.exists():
        return pd.DataFrame({"rank": [], "advertiser_id": [], "name": [], "revenue": []})
    return pq.read_table(path).to_pandas().sort_values("rank").reset_index(drop=True)


def load_preset_pool(out: Path, anchor_date: date) -> list[str]:
    """Names of the preset advertiser pool of ``anchor_date``, highest revenue first."""
    pool = read_preset_pool(out, anchor_date)
    if pool.empty:
        raise FileNotFoundError(f"no preset pool for {anchor_date} under {Path(out) / 'preset_pool'}")
    return pool["name"].tolist()
