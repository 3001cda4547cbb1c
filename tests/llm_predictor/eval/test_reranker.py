"""The GBDT reranker is never worse than its best input signal (issue 18): on a fixed real slice of
amazon-scientific and on a small simulated world; and a train row's features never see its own label."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_predictor.eval.baselines import Baselines, recall_at_k
from llm_predictor.eval.candidates import SIGNALS, user_fold
from llm_predictor.eval.config import GBDTConfig
from llm_predictor.eval.reranker import STATS_SALT, GBDTReranker
from tests.conftest import compiled_world
from tests.support.paths import AMAZON_SCIENTIFIC
from world.amazon_source import brand_key, category_path, clean_text, read_inter, read_items

MASKED = {"", "generic", "unknown", "n/a", "none", "na"}  # world.amazon.AmazonConfig.masked_brands
N_USERS = 1000  # the first users of amazon-scientific: 768 train rows, 229 labelled eval rows
CFG = GBDTConfig(n_jobs=1)
needs_amazon = pytest.mark.skipif(
    not (AMAZON_SCIENTIFIC / "Scientific.inter.json").exists(), reason="amazon-scientific data absent"
)


def amazon_slice(root: Path, n_users: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-last-out example rows of the first ``n_users`` users (brand = advertiser; label = the last
    review's brand; history newest first), built without Spark, and their advertisers table. One user in
    five (by hash) is an eval user."""
    items = read_items(root / "Scientific.item.json")
    inter = read_inter(root / "Scientific.inter.json", items, root / "Scientific.item.json")
    ids: dict[str, int] = {}
    names: dict[int, str] = {}
    cats: dict[int, Counter[str | None]] = {}

    def advertiser(item: int) -> int | None:
        key = brand_key(items[item]["brand"])
        if key in MASKED:
            return None
        a = ids.setdefault(key, len(ids) + 1)
        names.setdefault(a, clean_text(items[item]["brand"]))
        cats.setdefault(a, Counter())[category_path(items[item]["categories"])] += 1
        return a

    rows = []
    for user, seq in list(inter.items())[:n_users]:
        label = advertiser(seq[-1])
        past = seq[-2::-1]  # newest first
        hist = list(dict.fromkeys(a for a in map(advertiser, past) if a is not None))
        top_cats = Counter(category_path(items[i]["categories"]) for i in past)
        rows.append(
            {
                "user_id": user,
                "anchor_date": date(2026, 6, 30),
                "split": "eval" if user_fold(user, 5, 1) == 0 else "train",
                "label_advertiser_id": label,
                "label_advertiser_name": None if label is None else names[label],
                "active_advertiser_ids": hist,
                "active_advertisers": [names[a] for a in hist],
                "attributed_conversions": [clean_text(items[i]["title"]) for i in past],
                "top_brands": [names[a] for a in hist][:10],
                "top_categories": [c for c, _ in top_cats.most_common(10) if c],
            }
        )
    advertisers = pd.DataFrame(
        {
            "advertiser_id": list(names),
            "name": list(names.values()),
            "aliases": [[] for _ in names],
            "domain": [None] * len(names),
            "brand_group": [None] * len(names),
            "category": [cats[a].most_common(1)[0][0] for a in names],
        }
    )
    return pd.DataFrame(rows), advertisers


def recalls_at_20(train: pd.DataFrame, ev: pd.DataFrame, rr: GBDTReranker) -> dict[str, float]:
    """R@20 on ``ev`` of the baselines (fitted on ``train``) and of the fitted reranker ``rr``."""
    labels = ev["label_advertiser_id"].tolist()
    b = Baselines(k=20).fit(train)
    out = {name: recall_at_k(getattr(b, name)(ev), labels, 20) for name in SIGNALS}
    out["gbdt"] = recall_at_k(rr.predict(ev, k=20)[0], labels, 20)
    return out


@pytest.fixture(scope="module")
def amazon() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    df, adv = amazon_slice(AMAZON_SCIENTIFIC, N_USERS)
    train = df[df["split"] == "train"].reset_index(drop=True)
    ev = df[(df["split"] == "eval") & df["label_advertiser_id"].notna()].reset_index(drop=True)
    return train, ev, adv


@needs_amazon
def test_reranker_at_least_its_best_input_signal_on_real_slice(amazon):
    train, ev, adv = amazon
    assert len(train) > 700 and len(ev) > 200
    rr = GBDTReranker(CFG, adv).fit_stats(train).fit(train)
    r = recalls_at_20(train, ev, rr)
    best = max(r[name] for name in SIGNALS)
    assert r["gbdt"] >= best, r
    # the choice was made on held-out train users, and it is one the reranker can rank by
    assert rr.validation["rows"] >= CFG.min_validation_rows and rr.choice in ("gbdt", *SIGNALS)
    assert rr.validation["recall"][rr.choice] == max(rr.validation["recall"].values())
    # the cause, not the safety net: the learned ranker alone (no validation choice) is no longer below
    # popularity (with leave-one-out counts it was: 0.197 against 0.223 on this slice)
    alone = (
        GBDTReranker(dataclasses.replace(CFG, select_on_validation=False), adv).fit_stats(train).fit(train)
    )
    assert alone.choice == "gbdt" and recalls_at_20(train, ev, alone)["gbdt"] >= r["popularity"]


@needs_amazon
def test_signal_orders_reproduce_the_baselines_on_real_slice(amazon):
    """Every input signal's top 20 is among the candidates and its rank features give its exact list."""
    train, ev, adv = amazon
    rr = GBDTReranker(CFG, adv).fit_stats(train)
    b = Baselines(k=20).fit(train)
    cands, x, sizes = rr.features(ev)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for name, keys in SIGNALS.items():
        want = getattr(b, name)(ev)
        for j, c in enumerate(cands):
            order = rr.signal_order(x[starts[j] : starts[j + 1]], keys)
            assert [c[i] for i in order[:20]] == want[j], (name, j)


@needs_amazon
def test_count_features_do_not_reveal_the_label(amazon):
    """Out of fold, an advertiser's count features are one value per fold of train rows, on the rows whose
    label it is and on the others alike. (Leave-one-out counts were one lower on exactly the rows whose label
    it was: with pop_rank naming the advertiser, the trees read the label off them, and on eval rows, where
    no count is lowered, ranked the labels down.)"""
    train, _, adv = amazon
    rows = train[train["label_advertiser_id"].notna()].reset_index(drop=True)
    rr = GBDTReranker(CFG, adv).fit_stats(train)
    cands, x, sizes = rr.out_of_fold_features(rows)
    cols = [rr.feature_names.index(n) for n in ("label_count", "pop_count")]
    values: dict[tuple[int, int], set[tuple[float, ...]]] = defaultdict(set)
    is_label: dict[tuple[int, int], set[bool]] = defaultdict(set)
    pos = 0
    for u, c, n, y in zip(rows["user_id"], cands, sizes, rows["label_advertiser_id"], strict=True):
        fold = user_fold(int(u), CFG.stats_folds, STATS_SALT)
        for j, a in enumerate(c):
            values[(fold, a)].add(tuple(x[pos + j, cols].tolist()))
            is_label[(fold, a)].add(a == int(y))
        pos += n
    assert all(len(v) == 1 for v in values.values())
    assert sum(len(v) == 2 for v in is_label.values()) > 50  # advertisers both label and not in one fold


X = date(2026, 6, 15)


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from llm_predictor.data.compiled import load_examples, read_preset_pool
    from llm_predictor.eval.rows import load_advertisers

    data, ex = compiled_world(
        tmp_path_factory.mktemp("rerank"),
        spark,
        [X, X + timedelta(days=7)],
        users=1500,
        advertisers=150,
        days=60,
        seed=3,
    )
    df = load_examples(ex)
    pools = {d.isoformat(): read_preset_pool(ex, d) for d in sorted(set(df["anchor_date"]))}
    train = df[df["split"] == "train"].reset_index(drop=True)
    ev = df[(df["split"] == "eval") & df["label_advertiser_id"].notna()].reset_index(drop=True)
    return train, ev, load_advertisers(data, df, pools), pools


def test_reranker_at_least_its_best_input_signal_on_simulated_world(world):
    train, ev, adv, pools = world
    rr = GBDTReranker(CFG, adv, pools).fit_stats(train).fit(train)
    r = recalls_at_20(train, ev, rr)
    assert r["gbdt"] >= max(r[name] for name in SIGNALS), r
    assert rr.choice == "gbdt"  # rich texts: the learned ranker wins on the held-out train users too
