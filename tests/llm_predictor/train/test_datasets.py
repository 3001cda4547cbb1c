"""SFT and GRPO datasets from example rows (llm_predictor.train.datasets), no training."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from llm_predictor.data.parsing import parse_answer
from llm_predictor.train.datasets import grpo_dataset, sft_dataset, teacher_list
from llm_predictor.train.rewards import paper_reward
from tests.support.tiny_train import POOL, X, example_rows


def test_datasets_formats() -> None:
    df = pd.DataFrame([{**r, "anchor_date": X} for r in example_rows()])
    ds = sft_dataset(df, {X: POOL})
    assert len(ds) == 9  # 8 train + 1 eval labelled rows; the unlabelled one is dropped
    assert ds[0]["prompt"][0]["role"] == "user" and ds[0]["prompt"][0]["content"].startswith("#Role")
    assert ds[0]["completion"] == [{"role": "assistant", "content": "Nike"}]
    assert ds[0]["anchor_date"] == X.isoformat() and ds[0]["user_id"] == 100

    ds20 = sft_dataset(df, {X.isoformat(): POOL}, template="sft_text_20")
    names = ds20[2]["completion"][0]["content"].split("|")  # row 2: label IKEA, active Adidas, Sephora
    assert (
        names[:3] == ["IKEA", "Adidas", "Sephora"]
        and len(names) == len(POOL)
        and len(set(names)) == len(names)
    )
    popular = [f"Popular {k}" for k in range(30)]
    assert len(teacher_list("Nike", ["nike", "Adidas"], popular)) == 20
    assert teacher_list("Nike", ["nike", "Adidas"], popular)[:3] == ["Nike", "Adidas", "Popular 0"]
    with_brands = teacher_list("Nike", ["Adidas"], popular, brands=["Puma", "adidas", "Popular 1"])
    assert with_brands[:5] == ["Nike", "Adidas", "Puma", "Popular 1", "Popular 0"]

    # XML SFT (the GRPO warm start): the inference prompt, the XML answer as target, parseable by the reward.
    xml = sft_dataset(df, {X: POOL}, template="grpo_text")
    target = xml[2]["completion"][0]["content"]
    assert "<advertiser_names>" in xml[2]["prompt"][0]["content"] and target.startswith("<answer>")
    parsed = parse_answer(target)
    assert parsed.status == "ok" and parsed.advertisers[:3] == ["IKEA", "Adidas", "Sephora"]
    assert parsed.interests == ["Apparel Shoes", "Beauty Makeup"]  # ">" is markup: sanitised away
    # label first (R_match 0.1 * 19 + 2 = 3.9), 10 names (P_len 2.0), 2 interests (P_len 1.3)
    assert paper_reward([target], label_advertiser_name=["IKEA"]) == [pytest.approx(3.9 - 2.0 - 1.3)]

    g = grpo_dataset(df, POOL)
    assert set(g.column_names) >= {"prompt", "label_advertiser_name", "user_id"}
    assert "<advertiser_names>" in g[0]["prompt"][0]["content"] and g[0]["label_advertiser_name"] == "Nike"
    with pytest.raises(KeyError):
        sft_dataset(df, {date(2020, 1, 1): POOL})
