"""The simulator and the Amazon adapter both feed `adprior compile` unchanged; prompts render."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from llm_predictor.data.compile import CompileConfig, compile_examples
from llm_predictor.data.compiled import load_examples, load_preset_pool
from llm_predictor.data.parsing import parse_answer
from llm_predictor.data.prompts import build_prompt, shared_prefix
from llm_predictor.data.templates import INFERENCE_TEMPLATE
from tests.support.paths import AMAZON_SCIENTIFIC
from world.amazon import AmazonConfig, import_amazon
from world.config import WorldConfig
from world.simulate import simulate

AMAZON = AMAZON_SCIENTIFIC


def test_simulated_world_compiles(tmp_path: Path, spark) -> None:
    world = tmp_path / "world"
    simulate(WorldConfig(out=world, users=300, advertisers=150, days=60, end_date=date(2026, 6, 30), seed=3))
    x = date(2026, 6, 22)
    s = compile_examples(
        CompileConfig(data=world, out=tmp_path / "ex", anchor_dates=[x], tokenizer=None), spark=spark
    )
    d = s["dates"][x.isoformat()]
    assert d["sets"]["V1"]["users"] > 150
    assert 0.1 < d["label_coverage"] < 0.9
    df = load_examples(tmp_path / "ex", x)
    pool = load_preset_pool(tmp_path / "ex", x)
    assert 20 <= len(pool) <= 60
    prompts = [build_prompt(INFERENCE_TEMPLATE, r, pool) for r in df.head(20).to_dict("records")]
    prefix = shared_prefix(INFERENCE_TEMPLATE, pool)
    assert all(p.startswith(prefix) for p in prompts)
    assert len({p[len(prefix) :] for p in prompts}) > 1  # per-user parts differ
    assert "Nike" in prefix or "Amazon" in prefix or "Walmart" in prefix  # real brands in the pool


@pytest.mark.skipif(not AMAZON.exists(), reason="amazon-scientific data not available")
def test_amazon_compiles_leave_last_out(tmp_path: Path, spark) -> None:
    raw = tmp_path / "amazon"
    anchor = date(2026, 6, 30)
    import_amazon(
        AmazonConfig(
            inter_path=AMAZON / "Scientific.inter.json",
            items_path=AMAZON / "Scientific.item.json",
            out=raw,
            anchor_date=anchor,
        )
    )
    s = compile_examples(
        CompileConfig(data=raw, out=tmp_path / "ex", anchor_dates=[anchor], tokenizer="base"), spark=spark
    )
    d = s["dates"][anchor.isoformat()]
    assert d["sets"]["V1"]["users"] == 8317  # every user's second-to-last review is within 90 days
    assert d["label_coverage"] > 0.95  # the last item (unless its brand is masked) is the label
    assert d["sets"]["V1"]["eval"] / d["sets"]["V1"]["users"] == pytest.approx(0.1, abs=0.02)
    pt = d["prompt_tokens"]
    assert pt["n"] > 0 and pt["prefix"] > 100 and pt["p50"] > 20
    assert pt["max"] <= pt["budget"] + 64  # suffix is cut to the token budget (headers are never cut)
    df = load_examples(tmp_path / "ex", anchor)
    row = df[df["label_advertiser_id"].notna()].iloc[0]
    assert row["label_advertiser_name"] not in ("", "Generic", "Unknown")
    # A well-formed answer naming the label parses back to it.
    ans = parse_answer(
        f"<answer><advertiser_names>[{row['label_advertiser_name']}]</advertiser_names>"
        "<interests>[tools]</interests></answer>"
    )
    assert ans.advertisers == [row["label_advertiser_name"]]
