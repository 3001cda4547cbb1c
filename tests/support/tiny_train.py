"""A tiny training world shared by the SFT and GRPO tests: 10 hand-built example rows in the compile output
layout and a 2-layer randomly initialised Llama with the real SmolLM2 tokenizer.

* The model is a 2-layer Llama with hidden size 32 (~1.6 M parameters, almost all in the tied 49,152 x 32
  embedding); only the *tokenizer* comes from the real SmolLM2 folder (``ensure_base_model()``), so that TRL
  applies the real ChatML chat template.
* The examples are 10 rows (8 labelled train rows, one unlabelled, one eval row) written in the compile
  output layout (``examples/anchor_date=.../``, ``preset_pool/anchor_date=.../``), so the runs also read
  them through ``load_run_examples``. The preset pool has 10 names.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from adprior.contracts import EXAMPLE_SCHEMA, PRESET_POOL_SCHEMA
from llm_predictor.base_model import ensure_base_model
from tests.support.tiny_llama import tiny_llama_config

X = date(2026, 6, 22)
POOL = [
    "Nike",
    "Sephora",
    "IKEA",
    "Target",
    "Walmart",
    "Adidas",
    "Apple",
    "Best Buy",
    "Home Depot",
    "Ulta Beauty",
]
LABELS = ["Nike", "Sephora", "IKEA", "Adidas", "Target", "Apple", "Nike", "Ulta Beauty"]


def example_row(i: int, label: str | None, split: str = "train") -> dict:
    """Example row ``i`` (user 100 + i) with the given label and split, without its anchor date."""
    return {
        "user_id": 100 + i,
        "split": split,
        "in_v0": i % 2 == 0,
        "label_advertiser_id": None if label is None else POOL.index(label) + 1,
        "label_advertiser_name": label,
        "label_ts": None,
        "label_conversion_type": None if label is None else "purchase",
        "gender": ["female", "male"][i % 2],
        "age": 20 + i,
        "user_state": ["core", "casual", "new"][i % 3],
        "country": "US",
        "active_advertisers": ["Adidas", "Sephora"][: i % 3],
        "active_advertiser_ids": [6, 2][: i % 3],
        "attributed_conversions": [f"running shoes model {i}", "lipstick set"],
        "matched_conversions": ["yoga mat"],
        "onsite_searches": ["trail running shoes", f"gift idea {i}"],
        "offsite_searches": ["best marathon shoes"],
        "offsite_urls": [f"https://www.nike.com/t/pegasus-{i}"],
        "top_categories": ["Apparel > Shoes", "Beauty > Makeup"],
        "top_brands": ["Adidas", "Nike"],
        "n_attributed": 2,
        "n_matched": 1,
        "last_event_ts": None,
    }


def example_rows() -> list[dict]:
    """The 8 labelled train rows (LABELS), one unlabelled train row and one labelled eval row."""
    rows = [example_row(i, label) for i, label in enumerate(LABELS)]
    rows.append(example_row(8, None))  # unlabelled: dropped
    rows.append(example_row(9, "IKEA", split="eval"))  # eval split: not trained on
    return rows


def write_examples_dir(out: Path) -> Path:
    """Write :func:`example_rows` and the POOL preset pool of anchor date X under ``out`` (compile layout)."""
    part = f"anchor_date={X.isoformat()}"
    schema = pa.schema([f for f in EXAMPLE_SCHEMA if f.name != "anchor_date"])
    (out / "examples" / part).mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(example_rows(), schema=schema), out / "examples" / part / "part-0.parquet"
    )
    pool_schema = pa.schema([f for f in PRESET_POOL_SCHEMA if f.name != "anchor_date"])
    pool = [
        {"rank": k + 1, "advertiser_id": k + 1, "name": n, "revenue": 100.0 - k} for k, n in enumerate(POOL)
    ]
    (out / "preset_pool" / part).mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(pool, schema=pool_schema), out / "preset_pool" / part / "part-0.parquet"
    )
    return out


def write_tiny_llama(out: Path) -> Path:
    """Save the 2-layer Llama (seed 0) and the real SmolLM2 tokenizer into ``out``."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(ensure_base_model()))  # the real tokenizer and chat template
    torch.manual_seed(0)
    config = tiny_llama_config(
        len(tok),
        num_attention_heads=2,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id
    )
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def reload_model(folder: Path):
    """The causal LM saved in ``folder`` (a plain Hugging Face folder)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder))
