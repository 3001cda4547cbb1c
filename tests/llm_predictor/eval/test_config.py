"""Prompt ablations of the evaluation config (paper Table 4)."""

from __future__ import annotations

import pandas as pd
import pytest

from llm_predictor.eval.config import ablate_rows


def test_ablate_rows():
    rows = pd.DataFrame(
        {
            "user_id": [1, 2],
            "label_advertiser_id": [10, 20],
            "gender": ["f", "m"],
            "age": [30, 40],
            "user_state": ["core", "new"],
            "active_advertisers": [["A", "B", "C"], ["D"]],
            "active_advertiser_ids": [[1, 2, 3], [4]],
            "offsite_urls": [["u1", "u2"], []],
        }
    )
    dropped = ablate_rows(rows, "drop:offsite_urls")
    assert dropped["offsite_urls"].tolist() == [[], []]
    assert dropped["active_advertisers"].tolist() == rows["active_advertisers"].tolist()
    no_hist = ablate_rows(rows, "drop:active_advertisers")
    assert no_hist["active_advertisers"].tolist() == [[], []] and no_hist[
        "active_advertiser_ids"
    ].tolist() == [[], []]
    assert ablate_rows(rows, "drop:profile")[["gender", "age", "user_state"]].isna().all().all()
    assert ablate_rows(rows, "reverse")["active_advertisers"].tolist() == [["C", "B", "A"], ["D"]]
    shuffled = ablate_rows(rows, "shuffle", seed=3)["active_advertisers"].tolist()
    assert sorted(shuffled[0]) == ["A", "B", "C"]
    assert rows["label_advertiser_id"].tolist() == [10, 20]  # the input frame is not modified
    assert rows["offsite_urls"].tolist() == [["u1", "u2"], []]
    with pytest.raises(ValueError, match="field must be one of"):
        ablate_rows(rows, "drop:labels")
    with pytest.raises(ValueError, match="unknown ablation"):
        ablate_rows(rows, "sideways")
