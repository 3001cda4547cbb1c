"""Check that a simulated world is calibrated the way design.md asks, from compiled examples.

Reports, over labelled examples: the share whose label is among the user's past-conversion
advertisers (target 30-50 %); for the rest, the share foreshadowed by off-site URLs, searches or
brand mentions, or by brand-group / category neighbours of past advertisers; and Recall@K of the
non-LLM baselines against the *oracle* (ranking by the world's true propensity over the label
window), so that popularity stays well under half of the best achievable Recall@20.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

from llm_predictor.data.compiled import load_examples
from llm_predictor.eval.baselines import Baselines, recall_at_k
from world.schema import RawLayout


def oracle_rankings(data: Path, rows: pd.DataFrame, label_days: int = 7, k: int = 20) -> list[list[int]]:
    """Per row: advertisers ranked by true propensity summed over (x, x+label_days]."""
    truth = RawLayout(Path(data)).truth / "propensity"
    t = pads.dataset(truth, format="parquet").to_table().to_pandas()
    t["dt"] = pd.to_datetime(t["dt"]).dt.date
    out = []
    by_user = dict(tuple(t.groupby("user_id")))
    for uid, x in zip(rows["user_id"], rows["anchor_date"], strict=True):
        g = by_user.get(uid)
        if g is None:
            out.append([])
            continue
        g = g[(g["dt"] > x) & (g["dt"] <= x + timedelta(days=label_days))]
        s = g.groupby("advertiser_id")["propensity"].sum().sort_values(ascending=False)
        out.append([int(a) for a in s.index[:k]])
    return out


def calibration_report(data: Path, examples: Path) -> dict:
    """Signal coverage and baseline vs oracle recall for a simulated world."""
    adv = RawLayout(Path(data)).read("advertisers").to_pandas()
    by_id = adv.set_index("advertiser_id")
    df = load_examples(examples)
    train = df[df["split"] == "train"]
    ev = df[(df["split"] == "eval") & df["label_advertiser_id"].notna()]
    lab = df[df["label_advertiser_id"].notna()]
    n = len(lab)
    in_hist = url = search = brand = group = category = 0
    for r in lab.itertuples():
        y = int(r.label_advertiser_id)
        hist = {int(a) for a in r.active_advertiser_ids}
        if y in hist:
            in_hist += 1
            continue
        a = by_id.loc[y]
        name, dom = str(a["name"]).lower(), str(a["domain"]).lower()
        u = dom and any(dom in s.lower() for s in r.offsite_urls)
        s_ = any(
            name in s.lower() or (dom and dom in s.lower()) for s in (*r.offsite_searches, *r.onsite_searches)
        )
        b = any(name == s.lower() for s in r.top_brands)
        g = any(by_id.loc[h, "brand_group"] == a["brand_group"] for h in hist if h in by_id.index)
        c = any(by_id.loc[h, "category"] == a["category"] for h in hist if h in by_id.index)
        url += bool(u)
        search += bool(s_)
        brand += bool(b)
        group += bool(g)
        category += bool(c)
    rest = max(1, n - in_hist)
    base = Baselines(k=20).fit(train, adv)
    rank = {
        "popularity": base.popularity(ev),
        "history": base.history(ev),
        "cooccurrence": base.cooccurrence(ev),
        "heuristic": base.heuristic(ev),
        "oracle (true propensity)": oracle_rankings(data, ev),
    }
    labels = ev["label_advertiser_id"].tolist()
    recall = {
        name: {f"R@{k}": round(recall_at_k(r, labels, k), 4) for k in (1, 5, 20)} for name, r in rank.items()
    }
    return {
        "labelled_examples": n,
        "eval_labelled": len(ev),
        "label_in_past_advertisers": round(in_hist / max(1, n), 4),
        "of_the_rest": {
            "in_offsite_urls": round(url / rest, 4),
            "named_in_searches": round(search / rest, 4),
            "in_top_brands": round(brand / rest, 4),
            "brand_group_neighbour": round(group / rest, 4),
            "category_neighbour": round(category / rest, 4),
        },
        "recall_eval": recall,
        "popularity_over_oracle_R@20": round(
            recall["popularity"]["R@20"] / max(1e-9, recall["oracle (true propensity)"]["R@20"]), 4
        ),
    }


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(json.dumps(calibration_report(Path(sys.argv[1]), Path(sys.argv[2])), indent=2))
