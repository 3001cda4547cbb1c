"""The files of a SID build folder (:func:`llm_predictor.sid.build.build_sids`) and the readers of its SID map
and SID token vocabulary, as continued pre-training (``llm_predictor.train.cpt``) reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from llm_predictor.sid.tokens import sid_tokens

SID_MAP_FILE = "sid_map.parquet"
SID_SUMMARY_FILE = "sid_summary.json"
RQVAE_FILE = "rqvae.pt"
EMBEDDINGS_FILE = "item_embeddings.npy"


def load_sid_tokens(sid_out: Path) -> list[str]:
    """The SID token vocabulary of a :func:`~llm_predictor.sid.build.build_sids` output folder."""
    s = json.loads((Path(sid_out) / SID_SUMMARY_FILE).read_text())
    return sid_tokens(s["config"]["levels"], s["config"]["codebook_size"], s["collision_level_size"])


def load_sid_map(sid_out: Path) -> pd.DataFrame:
    """``sid_map.parquet`` of a :func:`~llm_predictor.sid.build.build_sids` output folder."""
    return pq.read_table(Path(sid_out) / SID_MAP_FILE).to_pandas()
