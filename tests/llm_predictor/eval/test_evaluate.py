"""The evaluation harness on hand-built examples whose answers are known."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from adprior.contracts import EXAMPLE_SCHEMA, PRESET_POOL_SCHEMA
from llm_predictor.data.compiled import read_preset_pool
from llm_predictor.eval.combine import combine_with_llm
from llm_predictor.eval.config import EvalConfig, GBDTConfig
from llm_predictor.eval.evaluate import evaluate
from llm_predictor.eval.reranker import GBDTReranker
from llm_predictor.eval.rows import load_advertisers
from llm_predictor.eval.runs import pool_ceiling
from llm_predictor.infer.decoding import DecodeConfig

X = date(2026, 6, 22)
NAMES = [
    "Nike",
    "Adidas",
    "Sephora",
    "Ulta Beauty",
    "The North Face",
    "Patagonia",
    "Best Buy",
    "Apple",
    "Samsung",
    "IKEA",
    "Wayfair",
    "Etsy",
    "Target",
    "Walmart",
    "Costco",
    "Lululemon",
    "Zara",
    "Uniqlo",
    "Dyson",
    "Sony",
    "Nintendo",
    "Glossier",
    "Fenty Beauty",
    "H&M",
    "Crate & Barrel",
    "Bath & Body Works",
    "Under Armour",
    "Lancôme",
    "Williams Sonoma",
    "Pottery Barn",
]
CATS = ["Apparel > Shoes", "Beauty > Skincare", "Outdoor > Jackets", "Electronics > TV", "Home > Furniture"]
FAST = GBDTConfig(n_estimators=40, num_leaves=15, min_child_samples=5, n_jobs=1)


def _tiny_cfg(world: tuple[Path, Path], model: Path, **fields) -> EvalConfig:
    """The tiny model on 6 examples of ``world``, 256-token budget, on CPU; ``fields``: other EvalConfig
    fields."""
    ex, data = world
    return EvalConfig(
        examples=ex, data=data, models=[str(model)], max_examples=6, budget_tokens=256, device="cpu", **fields
    )


def _advertisers() -> list[dict]:
    return [
        {
            "advertiser_id": 100 + i,
            "name": n,
            "aliases": [],
            "domain": n.lower().replace(" ", "").replace("&", "and") + ".com",
            "brand_group": f"group{i // 2}",  # consecutive pairs are siblings
            "category": CATS[i % len(CATS)],
            "is_active": True,
        }
        for i, n in enumerate(NAMES)
    ]


def _build(tmp: Path, n_train: int = 240, n_eval: int = 80, seed: int = 0) -> tuple[Path, Path]:
    """Examples where the label is the newest past advertiser for 3 of 4 users, else a random one."""
    rng = random.Random(seed)
    adv = _advertisers()
    ids = [a["advertiser_id"] for a in adv]
    name_of = {a["advertiser_id"]: a["name"] for a in adv}
    rows = []
    for uid in range(1, n_train + n_eval + 1):
        hist = rng.sample(ids, rng.randint(3, 6))
        label = hist[0] if uid % 4 else rng.choice([a for a in ids if a not in hist])
        rows.append(
            {
                "user_id": uid,
                "split": "train" if uid <= n_train else "eval",
                "in_v0": uid % 2 == 0,
                "label_advertiser_id": label,
                "label_advertiser_name": name_of[label],
                "gender": "f",
                "age": 30,
                "user_state": "core",
                "country": "US",
                "active_advertisers": [name_of[a] for a in hist],
                "active_advertiser_ids": hist,
                "attributed_conversions": [f"{name_of[hist[0]]} item"],
                "matched_conversions": [],
                "onsite_searches": ["gift ideas"],
                "offsite_searches": [],
                "offsite_urls": ["https://example.com/a"],
                "top_categories": ["Home / Furniture"],
                "top_brands": [],
                "n_attributed": 1,
                "n_matched": 0,
            }
        )
    # a few unlabelled users (served but no label): ignored by the metrics
    rows.append({**rows[-1], "user_id": 9999, "label_advertiser_id": None, "label_advertiser_name": None})
    ex_schema = pa.schema([f for f in EXAMPLE_SCHEMA if f.name != "anchor_date"])
    part = tmp / "ex" / "examples" / f"anchor_date={X.isoformat()}"
    part.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ex_schema), part / "part.parquet")
    pool_schema = pa.schema([f for f in PRESET_POOL_SCHEMA if f.name != "anchor_date"])
    pool = [
        {"rank": r + 1, "advertiser_id": a, "name": name_of[a], "revenue": 100.0 - r}
        for r, a in enumerate(ids[:12])
    ]
    part = tmp / "ex" / "preset_pool" / f"anchor_date={X.isoformat()}"
    part.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(pool, schema=pool_schema), part / "part.parquet")
    from world.schema import SCHEMAS

    (tmp / "data" / "advertisers").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(adv, schema=SCHEMAS["advertisers"]),
        tmp / "data" / "advertisers" / "part-0.parquet",
    )
    return tmp / "ex", tmp / "data"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("eval"))


def _frames(world):
    from llm_predictor.data.compiled import load_examples

    ex, data = world
    df = load_examples(ex)
    train = df[df["split"] == "train"].reset_index(drop=True)
    ev = df[(df["split"] == "eval") & df["label_advertiser_id"].notna()].reset_index(drop=True)
    pools = {X.isoformat(): read_preset_pool(ex, X)}
    return df, train, ev, load_advertisers(data), pools


def test_baselines_perfect_llm_and_gbdt(world, tmp_path):
    ex, data = world
    df, _, ev, _, _ = _frames(world)
    perfect = {
        int(u): [int(y), 999] for u, y in zip(df["user_id"], df["label_advertiser_id"], strict=True) if y == y
    }
    res = evaluate(
        EvalConfig(examples=ex, data=data, out=tmp_path, max_examples=None, gbdt=FAST, combine=False),
        predictions={"perfect": perfect},
    )
    m = res["methods"]
    assert res["n_rows"]["V1"] == len(ev) and res["n_rows"]["V0"] == int(ev["in_v0"].sum())
    assert m["perfect"]["recall"]["V1"]["R@1"] == 1.0 and m["perfect"]["recall"]["V0"]["R@20"] == 1.0
    # history: the newest past advertiser is the label exactly for users with user_id % 4 != 0
    expect = round(float((ev["user_id"] % 4 != 0).mean()), 4)
    assert m["history"]["recall"]["V1"]["R@1"] == expect
    # the consumers' control: history first, so at least history's R@1; a baseline row of its own
    assert m["heuristic"]["kind"] == "baseline" and m["heuristic"]["recall"]["V1"]["R@1"] == expect
    v0 = ev[ev["in_v0"]]
    assert m["history"]["recall"]["V0"]["R@1"] == round(float((v0["user_id"] % 4 != 0).mean()), 4)
    # the reranker learns "newest past advertiser" and beats popularity by far
    assert m["gbdt"]["recall"]["V1"]["R@1"] >= expect - 0.05
    assert m["gbdt"]["recall"]["V1"]["R@1"] > m["popularity"]["recall"]["V1"]["R@1"] + 0.3
    assert 0.0 <= m["gbdt"]["ceiling"]["V1"] <= 1.0 and m["gbdt"]["ceiling"]["V1"] >= expect
    # report files
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["methods"]["perfect"]["recall"]["V1"]["R@1"] == 1.0
    md = (tmp_path / "eval.md").read_text()
    assert "Command: `" in md and "| gbdt |" in md and "| heuristic |" in md and "V0 R@20" in md


def _informative_llm(df, hit_rate: float, seed: int = 1) -> dict[int, list[int]]:
    """Fake LLM: label first for ``hit_rate`` of users (also those a history model misses), else noise."""
    rng = random.Random(seed)
    ids = [100 + i for i in range(len(NAMES))]
    out = {}
    for u, y in zip(df["user_id"], df["label_advertiser_id"], strict=True):
        if y != y:
            continue
        noise = rng.sample([a for a in ids if a != int(y)], 19)
        out[int(u)] = [int(y), *noise] if rng.random() < hit_rate else noise
    return out


@pytest.mark.parametrize("mode", ["crossfit", "train"])
def test_gbdt_plus_informative_llm_beats_gbdt(world, mode):
    df, train, ev, adv, pools = _frames(world)
    llm = _informative_llm(df, hit_rate=0.8)
    res = combine_with_llm(train, ev, llm, llm if mode == "train" else None, adv, pools, FAST)
    assert res["mode"] == mode
    from llm_predictor.eval.baselines import recall_at_k

    y = ev["label_advertiser_id"].tolist()
    plain = recall_at_k(res["gbdt"]["ranked"], y, 1)
    combo = recall_at_k(res["gbdt + llm"]["ranked"], y, 1)
    assert combo > plain + 0.05, (plain, combo)
    # LLM candidates are added on top: the combined candidate set covers at least as many labels
    assert sum(res["gbdt + llm"]["in_candidates"]) >= sum(res["gbdt"]["in_candidates"])


def test_reranker_features_text_category_sibling(world):
    _, train, _, adv, pools = _frames(world)
    rr = GBDTReranker(FAST, adv, pools).fit_stats(train)
    row = {
        "user_id": 1,
        "anchor_date": X,
        "label_advertiser_id": None,
        "active_advertiser_ids": [100],  # Nike (group0 with Adidas)
        "offsite_urls": ["https://www.sephora.com/product/serum"],
        "onsite_searches": ["north face jacket"],
        "top_brands": ["Patagonia"],
        "top_categories": ["Outdoor / Jackets"],
    }
    cands, x = rr.row_candidates(row)
    f = {n: i for i, n in enumerate(rr.feature_names)}
    at = {a: x[cands.index(a)] for a in cands}
    sephora, north_face, patagonia, adidas = 102, 104, 105, 101
    assert at[sephora][f["offsite_urls_first"]] == 0 and at[sephora][f["cat_exact_rank"]] == 0
    assert at[north_face][f["onsite_searches_first"]] == 0
    assert at[patagonia][f["top_brands_first"]] == 0
    assert at[adidas][f["sib_rank"]] == 0 and at[100][f["in_hist"]] == 1
    assert cands[0] == 100 and len(cands) <= FAST.n_candidates


@pytest.fixture()
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.usefixtures("_one_thread")
@pytest.mark.parametrize(
    "template,decode",
    [
        ("grpo_text", DecodeConfig(max_new_tokens=12, batch_size=6)),
        ("grpo_text", DecodeConfig(max_new_tokens=120, batch_size=6, constrained=True, max_names=5)),
        (
            "sft_text",
            DecodeConfig(strategy="beam", num_beams=3, max_new_tokens=12, batch_size=6, constrained=True),
        ),
    ],
)
def test_end_to_end_tiny_model(world, tmp_path, tiny_model_dir, template, decode):
    cfg = _tiny_cfg(world, tiny_model_dir, out=tmp_path, template=template, decode=decode, gbdt=FAST)
    res = evaluate(cfg)
    m = res["methods"]["llm: tiny-llama"]
    for s in ("V1", "V0"):
        fmt = m["format"][s]
        if res["n_rows"][s] == 0:
            continue
        for key in ("valid_format_rate", "partial_rate", "unparseable_rate", "hallucination_rate"):
            assert 0.0 <= fmt[key] <= 1.0
        assert fmt["valid_format_rate"] + fmt["partial_rate"] + fmt["unparseable_rate"] == pytest.approx(1.0)
        for k in (1, 5, 20):
            assert 0.0 <= m["recall"][s][f"R@{k}"] <= 1.0
    if decode.constrained:  # catalogue-constrained: well formed, every name a real advertiser
        for k in (1, 5, 20):  # ... and it can only hit labels its prompt offers
            assert m["recall"]["V1"][f"R@{k}"] <= m["ceiling"]["V1"]
        assert m["format"]["V1"]["valid_format_rate"] == 1.0
        assert m["format"]["V1"]["hallucination_rate"] == 0.0
        expected = 3 if template == "sft_text" else 1
        assert m["format"]["V1"]["mean_unique_advertisers"] >= expected
    assert any(k.startswith("gbdt + llm: tiny-llama") for k in res["methods"])
    assert (tmp_path / "predictions_llm_tiny-llama.parquet").exists()
    assert "llm: tiny-llama" in (tmp_path / "eval.md").read_text()


@pytest.mark.usefixtures("_one_thread")
@pytest.mark.parametrize("constrained", [False, True])
def test_engine_path_matches_plain_generate(world, tmp_path, tiny_model_dir, constrained):
    """Greedy list decoding through the serving engine (prefix KV cache) predicts what plain generate does."""
    import dataclasses

    decode = DecodeConfig(
        max_new_tokens=120 if constrained else 40, batch_size=6, constrained=constrained, max_names=5
    )
    base = _tiny_cfg(world, tiny_model_dir, template="grpo_text", decode=decode, gbdt=None, baselines=False)
    preds = {}
    for engine in (True, False):
        out = tmp_path / f"engine-{engine}"
        res = evaluate(dataclasses.replace(base, engine=engine, out=out))
        preds[engine] = pd.read_parquet(out / "predictions_llm_tiny-llama.parquet")
        assert res["n_rows"]["V1"] == 6
    cols = ["user_id", "advertiser_ids", "advertiser_names", "status", "completions"]
    as_lists = {
        k: [[list(v) if hasattr(v, "tolist") else v for v in row] for row in d[cols].to_numpy().tolist()]
        for k, d in preds.items()
    }
    assert as_lists[True] == as_lists[False]
    if constrained:
        assert preds[True]["advertiser_ids"].map(len).gt(0).all()


def test_pool_ceiling(world):
    _, _, ev, _, pools = _frames(world)
    pool_ids = {d: p["advertiser_id"].tolist() for d, p in pools.items()}
    got = pool_ceiling(ev, pool_ids)
    in_pool = set(pool_ids[X.isoformat()])
    for r, flag in zip(ev.to_dict("records"), got, strict=True):
        if r["user_id"] % 4:  # the label is one of the user's active advertisers (see _build)
            assert flag
        else:  # a label outside the history: offered only through the preset pool
            assert flag == (r["label_advertiser_id"] in in_pool)
    assert 0 < got.mean() < 1
    assert not pool_ceiling(ev, {}).all()  # without the pool, only active advertisers count


@pytest.mark.usefixtures("_one_thread")
def test_ablation_runs_are_reported(world, tmp_path, tiny_model_dir):
    cfg = _tiny_cfg(
        world,
        tiny_model_dir,
        out=tmp_path,
        template="grpo_text",
        decode=DecodeConfig(max_new_tokens=120, batch_size=6, constrained=True, max_names=4),
        gbdt=None,
        baselines=False,
        ablations=("drop:active_advertisers", "shuffle"),
    )
    res = evaluate(cfg)
    for spec in ("drop:active_advertisers", "shuffle"):
        m = res["methods"][f"llm: tiny-llama [{spec}]"]
        assert m["kind"] == "ablation" and m["of"] == "llm: tiny-llama"
        assert set(m["recall"]["V1"]) == {"R@1", "R@5", "R@20"}
    assert "[shuffle]" in (tmp_path / "eval.md").read_text()
