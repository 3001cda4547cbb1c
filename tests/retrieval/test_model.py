"""retrieval/ (config, data, vocab, model, train): positives per objective, the sampled-softmax loss,
training, and the user-feature paths, on real parts: a simulated world, Spark compilation, a Feast repo
with SQLite.

The loss's masking and logQ correction are checked on hand-made tensors; the interaction rules on
hand-made raw events; training, save / load and historical-vs-online user embeddings on the world.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from adprior import store as st
from llm_predictor.data.compiled import load_examples
from retrieval.config import RetrievalConfig, config_from_dict, config_to_dict
from retrieval.data import (
    USER_FEATURE_COLUMNS,
    as_list,
    dwell_weight,
    interactions,
    item_features,
    online_user_features,
    user_features,
)
from retrieval.model import (
    TwoTower,
    embed_items,
    embed_users,
    item_log_q,
    load,
    retrieval_logits,
    sampled_softmax_loss,
    tensors,
)
from retrieval.train import recall_at_k, time_split, train
from retrieval.vocab import Vocab, Vocabs, age_bucket, category_tokens, encode_items, encode_users
from tests.conftest import event, feast_world, ts, write_raw
from world.schema import SCHEMAS

pytestmark = [
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
    pytest.mark.usefixtures("one_thread"),
]
ANCHORS = [date(2026, 6, 8)]  # one behaviour snapshot, known from 06-09 00:00
NOW = datetime(2026, 6, 20, tzinfo=UTC)  # after the snapshot, inside its 30-day ttl


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark) -> dict:
    """A small world with one behaviour snapshot in a fresh Feast repo (SQLite online store)."""
    tmp = tmp_path_factory.mktemp("retrieval")
    data, ex, cfg = feast_world(tmp, ANCHORS, users=80, advertisers=40, days=40, seed=5, impression_rate=6.0)
    st.apply(cfg)
    rcfg = RetrievalConfig(
        data=data, store=cfg, out=tmp / "models", objective="impression", epochs=4, threads=1
    )
    return {"data": data, "store": cfg, "cfg": rcfg, "examples": ex}


@pytest.fixture(scope="module")
def trained(world) -> dict:
    cfg = world["cfg"]
    metrics = train(cfg)
    return {"metrics": metrics, "model": load(cfg.folder())}


@pytest.fixture(scope="module")
def frames(world, trained) -> dict:
    """One point-in-time call for the validation rows and for every user at NOW (saves a Feast start)."""
    cfg = world["cfg"]
    inter = interactions(cfg.data, cfg.objective, date(2026, 6, 9), None)
    valid = inter[time_split(inter["event_timestamp"], cfg.valid_fraction)].reset_index(drop=True)
    users = [*sorted(int(u) for u in load_examples(world["examples"], ANCHORS[-1])["user_id"])[:6], 999_999]
    now = pd.DataFrame({"user_id": users, "event_timestamp": NOW, "part": "now"})
    entity = pd.concat([valid[["user_id", "event_timestamp"]].assign(part="valid"), now], ignore_index=True)
    feats = user_features(cfg.store, entity)
    return {
        "valid": valid,
        "valid_features": feats[feats["part"] == "valid"].reset_index(drop=True),
        "now_features": feats[feats["part"] == "now"].reset_index(drop=True),
        "users": users,
    }


# ---------------------------------------------------------------------------------- interactions


def test_interaction_rules_per_objective(tmp_path):
    def ev(t: str, et: str, item: int | None = 1, **kw) -> dict:
        return event(t, et, advertiser_id=101, item_id=item, **kw)

    durations = [None, 1.0, 10.0, 60.0, 300.0, 3000.0]
    events = [
        ev("2026-06-01 09:00:00", "impression"),  # before the window below
        *[ev(f"2026-06-02 10:0{i}:00", "impression", item=10 + i) for i in range(3)],
        *[ev(f"2026-06-02 11:0{i}:00", "click", item=20 + i, duration_s=d) for i, d in enumerate(durations)],
        ev("2026-06-03 09:00:00", "matched_conversion", item=31, conversion_type="purchase"),
        ev("2026-06-03 10:00:00", "attributed_conversion", item=32, conversion_type="checkout"),
        ev("2026-06-03 11:00:00", "ad_conversion", item=33, conversion_type="purchase"),
        ev("2026-06-03 12:00:00", "view_conversion", item=34, conversion_type="checkout"),
        ev(
            "2026-06-03 13:00:00", "attributed_conversion", item=35, conversion_type="add_to_cart"
        ),  # low priority
        ev("2026-06-03 14:00:00", "matched_conversion", item=None, conversion_type="purchase"),  # no item
        ev("2026-06-03 15:00:00", "onsite_search", item=None, text="shoes"),
        ev("2026-06-05 09:00:00", "impression", item=40),  # at the end: excluded
    ]
    root = write_raw(tmp_path / "raw", {"events": events})
    start, end = date(2026, 6, 2), date(2026, 6, 5)
    imp = interactions(root, "impression", start, end)
    assert imp["item_id"].tolist() == [10, 11, 12] and (imp["weight"] == 1).all()
    assert list(imp.columns) == ["user_id", "item_id", "advertiser_id", "event_timestamp", "weight"]
    assert imp["event_timestamp"].is_monotonic_increasing and str(imp["event_timestamp"].dt.tz) == "UTC"
    assert len(interactions(root, "impression")) == 5  # no window: every impression
    clicks = interactions(root, "click_dwell", start, end, dwell_cap_s=300.0, dwell_min_weight=0.1)
    w = clicks["weight"].to_numpy()
    assert clicks["item_id"].tolist() == [20, 21, 22, 23, 24, 25]
    assert w[0] == 0.1  # no duration -> the floor
    assert np.all(np.diff(w[1:5]) > 0)  # more dwell, more weight ...
    assert w[4] == w[5] == 1.0  # ... up to the cap
    assert math.isclose(w[3], math.log1p(60) / math.log1p(300))
    conv = interactions(root, "conversion", start, end)
    assert conv["item_id"].tolist() == [31, 32, 33, 34] and (conv["weight"] == 1).all()
    np.testing.assert_allclose(
        dwell_weight([0, 5, None, 1e9], 100.0, 0.2), [0.2, math.log1p(5) / math.log1p(100), 0.2, 1]
    )
    with pytest.raises(ValueError, match="objective 'views'"):
        interactions(root, "views")


def test_corrupt_event_rows_name_the_column(tmp_path):
    root = write_raw(
        tmp_path / "a",
        {
            "events": [
                event("2026-06-02 10:00:00", "impression", advertiser_id=1, item_id=5),
                event("2026-06-02 11:00:00", "impression", user_id=2, advertiser_id=1, item_id=None),
            ]
        },
    )
    with pytest.raises(ValueError, match=r"column 'item_id', row 1 .*dt=2026-06-02.*user_id=2"):
        interactions(root, "impression")
    assert len(interactions(root, "conversion")) == 0  # the broken row is not a conversion
    # a null user id breaks the raw contract, so write the file directly
    bad = tmp_path / "b" / "events" / "dt=2026-06-02"
    bad.mkdir(parents=True)
    schema = SCHEMAS["events"]
    rows = {f: [None, None] for f in schema.names}
    rows.update(
        user_id=[3, None], ts=[ts("2026-06-02 10:00:00")] * 2, event_type=["click", "click"], item_id=[7, 8]
    )
    pq.write_table(
        pa.table({f: pa.array(rows[f], type=schema.field(f).type) for f in schema.names}), bad / "p.parquet"
    )
    with pytest.raises(ValueError, match=r"column 'user_id', row 1"):
        interactions(tmp_path / "b", "click_dwell")


def test_item_features_and_vocabularies(world, tmp_path):
    items = item_features(world["data"])
    assert items["item_id"].is_unique and items["item_id"].is_monotonic_increasing
    assert list(items.columns) == [
        "item_id",
        "advertiser_id",
        "advertiser_name",
        "category",
        "price",
        "brand_group",
    ]
    assert items[["advertiser_name", "brand_group", "category"]].notna().all().all()
    assert (
        category_tokens("Apparel > Athletic")
        == category_tokens("Apparel / Athletic")
        == ["apparel", "apparel>athletic"]
    )
    assert [age_bucket(a) for a in (None, 12, 18, 24, 25, 70)] == [
        None,
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "65+",
    ]
    v = Vocab.build([303, 101, None, 202.0, 101])
    assert v.tokens == ["101", "202", "303"] and len(v) == 4
    assert v.ids([101, np.int64(303), 202, 999, None, float("nan")]) == [1, 3, 2, 0, 0, 0]
    users = pd.DataFrame(
        {
            "gender": ["f", None],
            "age": [30, None],
            "user_state": ["core", "new"],
            "country": ["US", "US"],
            "active_advertiser_ids": [[101, 5], None],
            "top_categories": [["Toys / Games"], []],
            "top_brands": [["Nike"], None],
            "n_attributed": [1, None],
            "n_matched": [0, None],
        }
    )
    vocabs = Vocabs.build(items, users, price_buckets=4)
    assert (
        "toys>games" in vocabs.category.tokens
        and "nike" in vocabs.brand.tokens
        and len(vocabs.price_edges) == 3
    )
    vocabs.save(tmp_path / "v.json")
    assert Vocabs.load(tmp_path / "v.json") == vocabs
    enc = encode_users(users, vocabs, max_history=3)
    assert enc["advertisers"].shape == (2, 3) and enc["advertisers"][1].tolist() == [0, 0, 0]
    assert enc["dense"][1].tolist() == [0.0, 0.0, 0.0] and enc["dense"][0, 2] == 1.0
    cfg = RetrievalConfig(start=date(2026, 6, 1), hidden=(8, 4))
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg


# --------------------------------------------------------------------------------------------- loss


def test_duplicate_positives_and_own_item_negatives_are_masked():
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    pos = torch.tensor([[0.8, 0.6], [0.0, 1.0], [0.8, 0.6]])  # rows 0 and 2 share item 7
    pos_ids = torch.tensor([7, 8, 7])
    neg = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    neg_ids = torch.tensor([8, 9])  # item 8 is row 1's own positive
    logits = retrieval_logits(user, pos, pos_ids, neg, neg_ids, temperature=0.5)
    assert logits.shape == (3, 5)
    inf = torch.isinf(logits)
    assert inf.tolist() == [
        [False, False, True, False, False],
        [False, False, False, True, False],
        [True, False, False, False, False],
    ]
    raw = torch.cat([user @ pos.T, user @ neg.T], 1) / 0.5
    assert torch.allclose(logits[~inf], raw[~inf])
    # the loss is the softmax over the unmasked columns, row i's target in column i
    want = [-(raw[i, i] - torch.logsumexp(raw[i][~inf[i]], 0)) for i in range(3)]
    w = torch.tensor([1.0, 0.5, 2.0])
    got = sampled_softmax_loss(logits, w)
    assert torch.isclose(got, sum(wi * li for wi, li in zip(w, want, strict=True)) / w.sum())
    assert torch.isclose(sampled_softmax_loss(logits), torch.stack(want).mean())
    # in-batch only: masking also holds without mixed negatives
    assert torch.isinf(retrieval_logits(user, pos, pos_ids)).sum() == 2


def test_logq_correction_subtracts_log_expected_count():
    user = torch.eye(3)
    pos = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    neg = torch.tensor([[0.6, 0.8, 0.0]])
    ids, neg_ids = torch.tensor([0, 1, 2]), torch.tensor([3])
    lq, nlq = torch.log(torch.tensor([0.5, 0.25, 0.25])), torch.log(torch.tensor([0.1]))
    plain = retrieval_logits(user, pos, ids, neg, neg_ids, 1.0)
    corrected = retrieval_logits(user, pos, ids, neg, neg_ids, 1.0, lq, nlq)
    assert torch.allclose(corrected, plain - torch.cat([lq, nlq]).unsqueeze(0))  # diagonal included
    # a popular in-batch item is penalised as a negative: its share of row 1's softmax drops
    assert torch.softmax(corrected, 1)[1, 0] < torch.softmax(plain, 1)[1, 0]
    counts = np.array([6, 2, 0, 0])
    got = item_log_q(counts, batch_size=4, mixed_negatives=8)
    np.testing.assert_allclose(
        np.exp(got), [4 * 6 / 8 + 2, 4 * 2 / 8 + 2, 4 * 0.5 / 8 + 2, 4 * 0.5 / 8 + 2], rtol=1e-6
    )


def test_recall_at_k_counts_strictly_better_items():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    users = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    got = recall_at_k(users, items, torch.tensor([0, 1]), (1, 2, 3))
    assert got == {"1": 0.5, "2": 0.5, "3": 1.0}  # item 1 ranks third for the second user


# ---------------------------------------------------------------------------------------- training


def test_training_lowers_loss_and_beats_random_embeddings(world, trained, frames):
    m = trained["metrics"]
    folder = world["cfg"].folder()
    assert json.loads((folder / "metrics.json").read_text()) == m
    assert m["rows"]["train"] > 5000 and m["rows"]["valid"] == len(frames["valid"])
    assert m["loss"]["train"][-1] < m["loss"]["train"][0] and m["loss"]["valid"][-1] < m["loss"]["valid"][0]
    assert m["window"]["start"] >= "2026-06-09"  # default start: the first behaviour snapshot
    assert m["recall"]["100"] > m["baselines"]["untrained"]["100"] + 0.1
    assert m["recall"]["100"] > m["baselines"]["popularity"]["100"]
    # an independently seeded random model on the same validation rows
    model = trained["model"]
    valid_users = model.encode_users(frames["valid_features"])
    items = tensors(encode_items(model.items, model.vocabs))
    row_of = {int(i): r for r, i in enumerate(model.items["item_id"])}
    pos = torch.tensor([row_of[int(i)] for i in frames["valid"]["item_id"]])
    torch.manual_seed(123)
    rand = TwoTower(
        model.vocabs.sizes(), model.cfg.feature_dim, model.cfg.embedding_dim, model.cfg.hidden
    ).eval()
    random_recall = recall_at_k(embed_users(rand, valid_users), embed_items(rand, items), pos, (100,))["100"]
    # the saved model reproduces the reported recall from freshly fetched point-in-time features
    ids, vecs = model.embed_items()
    assert ids.tolist() == model.items["item_id"].tolist() and vecs.dtype == np.float32
    again = recall_at_k(
        torch.from_numpy(model.embed_users(frames["valid_features"])),
        torch.from_numpy(vecs),
        pos,
        (10, 50, 100),
    )
    assert again == pytest.approx(m["recall"], abs=1e-6)
    assert again["100"] > random_recall + 0.1


def test_save_load_round_trip(world, trained, frames):
    a, b = trained["model"], load(world["cfg"].folder())
    assert b.cfg == world["cfg"] and b.vocabs == a.vocabs
    ids_a, va = a.embed_items()
    ids_b, vb = b.embed_items()
    assert np.array_equal(ids_a, ids_b) and np.array_equal(va, vb)
    assert np.array_equal(a.embed_users(frames["now_features"]), b.embed_users(frames["now_features"]))
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match=r"model\.pt"):
        load(world["cfg"].out / "nope")


def test_online_and_historical_user_features_embed_identically(world, trained, frames):
    st.materialize(world["store"], end=NOW)
    users = frames["users"]
    online = online_user_features(world["store"], users)
    hist = frames["now_features"]
    assert list(online.columns) == ["user_id", *USER_FEATURE_COLUMNS] and online["user_id"].tolist() == users

    def norm(v: object) -> object:
        if isinstance(v, list | np.ndarray):
            return [str(x) for x in as_list(v)]
        return (
            None
            if v is None or pd.isna(v)
            else str(float(v))
            if isinstance(v, int | float | np.number)
            else str(v)
        )

    for col in USER_FEATURE_COLUMNS:
        assert [norm(v) for v in online[col]] == [norm(v) for v in hist[col]], col
    assert (
        online["active_advertiser_ids"].map(lambda v: len(as_list(v))).iloc[:-1].sum() > 0
    )  # real behaviour, not only nulls
    model = trained["model"]
    eo, eh = model.encode_users(online), model.encode_users(hist)
    for k in eo:
        assert np.array_equal(eo[k], eh[k]), k
    vo, vh = model.embed_users(online), model.embed_users(hist)
    assert vo.shape == (len(users), model.cfg.embedding_dim)
    assert np.array_equal(vo, vh)
    assert not np.array_equal(vo[0], vo[1])
