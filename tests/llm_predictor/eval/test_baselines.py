"""llm_predictor.eval.baselines: the heuristic control list (history, brands, co-occurrence, popularity)
on hand-built rows whose answer is known, and the brand -> advertiser map it reads names through."""

from __future__ import annotations

import pandas as pd

from llm_predictor.eval.baselines import Baselines, name_index, recall_at_k

ADVERTISERS = pd.DataFrame(
    {
        "advertiser_id": [1, 2, 3, 4, 5, 6, 7],
        "name": ["Nike", "Adidas", "Sephora", "Apple", "IKEA", "Old Brand", "Zara"],
        "aliases": [["Nike Inc"], [], [], ["Apple Store"], [], [], []],
        "is_active": [True, True, True, True, True, False, True],
    }
)


def row(uid: int, past: list[int], brands: list[str], label: int | None = None, **kw) -> dict:
    names = dict(zip(ADVERTISERS["advertiser_id"], ADVERTISERS["name"], strict=True))
    return {
        "user_id": uid,
        "split": kw.get("split", "train"),
        "active_advertiser_ids": past,
        "active_advertisers": [names.get(a, f"adv{a}") for a in past],
        "top_brands": brands,
        "label_advertiser_id": label,
        "label_advertiser_name": None if label is None else names.get(label, f"adv{label}"),
    }


def train_rows() -> pd.DataFrame:
    # popularity: 3 (4 users) > 5 (3) > 2 (2) > ...; transitions: 1 -> 7 (twice), 1 -> 5 (once)
    rows = [
        row(10, [3, 1], [], 7),
        row(11, [1], [], 7),
        row(12, [3, 5], [], 5),
        row(13, [3, 1], [], 5),
        row(14, [3, 2], [], None),
        row(15, [2, 5], [], None),
    ]
    return pd.DataFrame(rows)


def test_heuristic_order_history_brands_cooccurrence_popularity():
    b = Baselines(k=20).fit(train_rows(), ADVERTISERS)
    ev = pd.DataFrame([row(1, [2, 1], ["apple store", "NIKE", "Sephora", "Unknown Brand"], split="eval")])
    got = b.heuristic(ev)[0]
    # history newest first (2, 1); brands in order, case-insensitive and through aliases, already-listed
    # Nike skipped, an unknown name skipped (4, 3); co-occurrence of 1 (7 before 5); popularity fills the rest
    assert got[:6] == [2, 1, 4, 3, 7, 5]
    assert len(got) == len(set(got))  # distinct
    assert set(got) <= set(b.popular) | {2, 1, 4, 3, 7, 5}
    assert b.cooccurring([2, 1]) == [7, 5]


def test_heuristic_is_cut_to_k_and_deduplicated():
    b = Baselines(k=3).fit(train_rows(), ADVERTISERS)
    ev = pd.DataFrame([row(1, [5, 5, 3, 2], ["IKEA", "Adidas"], split="eval")])
    assert b.heuristic(ev) == [[5, 3, 2]]
    assert Baselines(k=20).fit(train_rows()).heuristic(pd.DataFrame([row(2, [], [])]))[0][:2] == [3, 5]


def test_brands_map_through_table_train_rows_and_own_history_only():
    train = train_rows()
    b = Baselines(k=20).fit(train)  # no table: names from the train rows (past advertisers and labels)
    assert b.brands(row(1, [], ["zara", "sephora", "Old Brand"])) == [7, 3]
    with_table = Baselines(k=20).fit(train, ADVERTISERS)
    assert with_table.brands(row(1, [], ["Old Brand", "Nike Inc"])) == [1]  # inactive advertisers never
    own = {**row(1, [], ["Brand X"]), "active_advertisers": ["Brand X"], "active_advertiser_ids": [99]}
    assert b.brands(own) == [99]  # the row's own past advertisers name it too
    idx = name_index(train, ADVERTISERS)
    assert idx["apple store"] == 4 and idx["nike"] == 1 and "old brand" not in idx


def test_never_reads_the_scored_rows_labels():
    b = Baselines(k=20).fit(train_rows(), ADVERTISERS)
    ev = pd.DataFrame([row(1, [2], ["Mystery Co"], split="eval"), row(2, [4, 3], ["Zara"], split="eval")])
    before = b.heuristic(ev)
    leaked = ev.assign(label_advertiser_id=[99, 6], label_advertiser_name=["Mystery Co", "Zara"])
    assert b.heuristic(leaked) == before  # labels changed: lists unchanged
    assert 99 not in before[0]  # a brand named only by an eval label is not mapped


def test_heuristic_beats_history_when_brands_foreshadow_the_label():
    """The reason brands are in the control: a label named by a brand mention and never converted with."""
    b = Baselines(k=2).fit(train_rows(), ADVERTISERS)
    ev = pd.DataFrame([row(i, [2], ["Apple"], label=4, split="eval") for i in range(5)])
    labels = ev["label_advertiser_id"].tolist()
    assert recall_at_k(b.heuristic(ev), labels, 2) == 1.0
    assert recall_at_k(b.history(ev), labels, 2) == 0.0
