"""The training texts of continued pre-training (paper 3.5): SID-bearing recommendation text and general text.

:func:`cpt_texts` builds the texts of a phase from the SID map and compiled examples with ``sid_sequences``
(``llm_predictor.sid.attach.attach_sid_sequences``), shuffled:

* item alignment: "Item <a_1><b_2><c_3><d_0>: <title>. Category: .... Brand: ...." and the reverse;
* user sequences: "A user converted with <sid> <sid> .... Next item: <sid> (<advertiser>)." from the
  user's SID history (chronological), and, for labelled rows of the training split, "... Next advertiser:
  <label advertiser>.";
* general text (phase 2 only): the catalogue's item descriptions as plain sentences without SIDs. This is
  our stand-in for the paper's "substantial share of general-domain data": no general-domain corpus is
  available offline here, so it guards the text-token embeddings less than a real corpus would.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_predictor.sid.artifacts import load_sid_map

if TYPE_CHECKING:
    import pandas as pd

    from llm_predictor.train.config import CPTConfig


def _clean(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return " ".join(str(value).split())


def item_alignment_texts(sid_map: pd.DataFrame) -> list[str]:
    """Two sentences per item tying its SID to its text: "Item <sid>: <text>." and "<text>. Semantic ID: <sid>."."""
    out = []
    for sid, text in zip(sid_map["sid"], sid_map["text"], strict=True):
        text = _clean(text).rstrip(".")
        out += [f"Item {sid}: {text}.", f"{text}. Semantic ID: {sid}."]
    return out


def general_texts(sid_map: pd.DataFrame) -> list[str]:
    """SID-free sentences about the catalogue (the stand-in for general-domain text; see the module doc)."""
    out = []
    for title, brand, cat in zip(
        sid_map["title"], sid_map["advertiser_name"], sid_map["category"], strict=True
    ):
        title, brand, cat = _clean(title).rstrip("."), _clean(brand), _clean(cat).replace(" > ", ", ")
        if not title:
            continue
        sentence = (
            f"{title}"
            + (f" is sold by {brand}" if brand else "")
            + (f" in the category {cat}" if cat else "")
        )
        out.append(sentence + ".")
    return out


def sequence_texts(examples: pd.DataFrame, sid_map: pd.DataFrame, max_history: int = 10) -> list[str]:
    """User-history sentences from the ``sid_sequences`` column (newest first in the table).

    "A user converted with <h1> <h2> .... Next item: <sid> (<advertiser>)." from a row with at least two SIDs
    (the newest one is the target), and "A user converted with .... Next advertiser: <label>." for labelled
    rows. Duplicates are removed, order kept.
    """
    adv = dict(zip(sid_map["sid"], sid_map["advertiser_name"], strict=True))
    out: list[str] = []
    has_label = "label_advertiser_name" in examples.columns
    for row in examples.itertuples(index=False):
        seq = getattr(row, "sid_sequences", None)
        seq = [] if seq is None or (isinstance(seq, float) and seq != seq) else list(seq)
        chrono = [s for s in reversed(seq) if isinstance(s, str)]
        if len(chrono) >= 2:
            hist, nxt = chrono[:-1][-max_history:], chrono[-1]
            name = _clean(adv.get(nxt, ""))
            out.append(
                f"A user converted with {' '.join(hist)}. Next item: {nxt}" + (f" ({name})." if name else ".")
            )
        label = _clean(getattr(row, "label_advertiser_name", None)) if has_label else ""
        if chrono and label:
            out.append(f"A user converted with {' '.join(chrono[-max_history:])}. Next advertiser: {label}.")
    return list(dict.fromkeys(out))


def cpt_texts(cfg: CPTConfig) -> tuple[list[str], dict[str, int]]:
    """The shuffled training texts of ``cfg.phase`` and their counts by kind."""
    rng = random.Random(cfg.seed)
    sid_map = load_sid_map(cfg.sids)
    rec: list[str] = item_alignment_texts(sid_map) if cfg.item_texts else []
    n_items = len(rec)
    n_seq = 0
    if cfg.examples is not None:
        from llm_predictor.data.compiled import load_examples

        ex = load_examples(Path(cfg.examples))
        if "sid_sequences" not in ex.columns:
            raise ValueError(f"{cfg.examples} has no sid_sequences column: run `adprior sid attach` first")
        if cfg.split is not None:
            ex = ex[ex["split"] == cfg.split]
        seq = sequence_texts(ex, sid_map, cfg.max_history)
        n_seq = len(seq)
        rec += seq
    if not rec:
        raise ValueError("no CPT texts: enable item_texts or give examples with sid_sequences")
    if cfg.max_texts is not None and len(rec) > cfg.max_texts:
        rec = rng.sample(rec, cfg.max_texts)
    texts = list(rec)
    n_general = 0
    if cfg.phase == 2 and cfg.general_fraction > 0:
        pool = general_texts(sid_map)
        want = round(len(rec) * cfg.general_fraction / max(1e-9, 1.0 - cfg.general_fraction))
        general = rng.sample(pool, want) if want <= len(pool) else [rng.choice(pool) for _ in range(want)]
        n_general = len(general)
        texts += general
    rng.shuffle(texts)
    return texts, {
        "item_texts": n_items,
        "sequence_texts": n_seq,
        "recommendation_texts": len(rec),
        "general_texts": n_general,
        "texts": len(texts),
    }
