"""What evaluation reads: the scored rows, precomputed predictions and the advertisers table.

Rows are compiled examples (:func:`llm_predictor.data.compiled.load_examples`); a row is keyed by
(user_id, anchor date 'YYYY-MM-DD'). Precomputed predictions (a dict or a parquet file of user_id
[, anchor_date], advertiser_ids) are looked up by that key or by user_id alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from world.schema import RawLayout


def as_list(value: Any) -> list[Any]:
    """A list cell as a plain list: None / NaN -> [], a bare string -> [string]."""
    if value is None:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def row_key(row: Mapping[str, Any]) -> tuple[int, str]:
    """(user_id, anchor date 'YYYY-MM-DD') of an examples row."""
    return int(row["user_id"]), str(row["anchor_date"])[:10]


def lookup_predictions(preds: Mapping[Any, Sequence[int]], row: Mapping[str, Any]) -> list[int] | None:
    """A row's precomputed predictions, keyed by (user_id, date str), (user_id, date) or user_id."""
    uid, d = row_key(row)
    for key in ((uid, d), (uid, row.get("anchor_date")), uid):
        try:
            if key in preds:
                return [int(a) for a in preds[key]]
        except TypeError:
            continue
    return None


def align_predictions(
    preds: Sequence[Sequence[int] | None] | Mapping[Any, Sequence[int]], rows: pd.DataFrame
) -> list[list[int] | None]:
    """Predictions aligned with ``rows``: a lookup dict is looked up per row, a sequence is checked for length."""
    if isinstance(preds, Mapping):
        return [lookup_predictions(preds, r) for r in rows.to_dict("records")]
    if len(preds) != len(rows):
        raise ValueError(f"{len(preds)} predictions for {len(rows)} rows")
    return [None if p is None else [int(a) for a in p] for p in preds]


def load_predictions(path: Path) -> dict[Any, list[int]]:
    """A predictions parquet (user_id, optional anchor_date, advertiser_ids) as a lookup dict."""
    df = pd.read_parquet(path)
    out: dict[Any, list[int]] = {}
    has_date = "anchor_date" in df.columns
    for r in df.to_dict("records"):
        ids = [int(a) for a in as_list(r["advertiser_ids"])]
        out[(int(r["user_id"]), str(r["anchor_date"])[:10]) if has_date else int(r["user_id"])] = ids
    return out


def load_advertisers(
    data: Path | None, examples: pd.DataFrame | None = None, pools: Mapping[Any, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """The raw advertisers table; without a data root, ids and names gathered from the examples."""
    if data is not None and RawLayout(Path(data)).table("advertisers").exists():
        table = RawLayout(Path(data)).read("advertisers")
        return table.drop_columns([c for c in ("dt",) if c in table.column_names]).to_pandas()
    names: dict[int, str] = {}
    if examples is not None:
        for ids, nm in zip(examples["active_advertiser_ids"], examples["active_advertisers"], strict=True):
            for a, n in zip(as_list(ids), as_list(nm), strict=False):
                names.setdefault(int(a), str(n))
        lab = examples[examples["label_advertiser_id"].notna()]
        for a, n in zip(lab["label_advertiser_id"], lab["label_advertiser_name"], strict=True):
            names.setdefault(int(a), str(n))
    for pool in (pools or {}).values():
        for a, n in zip(pool["advertiser_id"], pool["name"], strict=True):
            names.setdefault(int(a), str(n))
    return pd.DataFrame(
        {
            "advertiser_id": list(names),
            "name": list(names.values()),
            "aliases": [[] for _ in names],
            "domain": [None] * len(names),
            "brand_group": [None] * len(names),
            "category": [None] * len(names),
            "is_active": [True] * len(names),
        }
    )


def sample_rows(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """``n`` rows drawn at random (``seed``), or all of them; in (anchor_date, user_id) order."""
    df = df.sort_values(["anchor_date", "user_id"]).reset_index(drop=True)
    if n is not None and len(df) > n:
        df = df.sample(n=n, random_state=seed).sort_values(["anchor_date", "user_id"]).reset_index(drop=True)
    return df


def set_masks(rows: pd.DataFrame, sets: Sequence[str]) -> dict[str, np.ndarray]:
    """Per example set, which rows belong to it: 'V1' every row, 'V0' the ``in_v0`` rows."""
    masks = {}
    for s in sets:
        if s == "V1":
            masks[s] = np.ones(len(rows), dtype=bool)
        elif s == "V0":
            masks[s] = rows["in_v0"].fillna(False).astype(bool).to_numpy()
        else:
            raise ValueError(f"unknown set {s!r}; expected 'V1' or 'V0'")
    return masks
