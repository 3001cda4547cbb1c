"""Inference engines: the transformers engine's shared-prefix KV cache against the naive path, grammar-
constrained answers and their per-row statuses, counters and model versions (the real vLLM engine is in
test_vllm.py).

A tiny random Llama with the real SmolLM2 tokenizer (conftest.py fixtures, as in test_decoding.py), saved to
a temp folder so that make_engine loads it by path.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

from llm_predictor.data.parsing import parse_answer
from llm_predictor.infer.backends import make_engine
from llm_predictor.infer.decoding import chat_texts
from llm_predictor.infer.engines import Engine, EngineConfig, model_version
from llm_predictor.infer.hf_engine import TransformersEngine

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prefix(catalogue) -> str:
    """The shared prompt prefix every user's suffix is appended to."""
    return (
        "#Role\nYou are an ad-matching assistant.\n\n#Preset Pool\n- Preset Advertiser List: "
        + ", ".join(catalogue[:12])
        + "\n\n#Output Format\n- Return ONLY the following XML.\n\n"
    )


@pytest.fixture(scope="module")
def model_dir(tokenizer, tiny_llama, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(len(tokenizer), seed=0).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def suffixes() -> list[str]:
    """Six users with suffixes of clearly different lengths."""
    rng = random.Random(3)
    words = ["user", "bought", "shoes", "lipstick", "tv", "sofa", "searched", "nike.com", "|", "<answer>"]
    return [
        "#Input\n- Behavior:\n" + " ".join(rng.choice(words) for _ in range(n)) for n in (1, 4, 9, 17, 30, 2)
    ]


@pytest.fixture(scope="module")
def pools(suffixes, catalogue) -> list[list[str]]:
    rng = random.Random(5)
    # the first 23 names only, so the seeded samples (and the pools) stay as they were
    return [rng.sample(catalogue[:23], rng.randint(5, 12)) for _ in suffixes]


def _engine(model_dir: Path, **kw) -> TransformersEngine:
    base = {"model": str(model_dir), "max_new_tokens": 12, "batch_size": 8, "constrained": False}
    eng = make_engine(EngineConfig(**{**base, **kw}))
    assert isinstance(eng, TransformersEngine) and isinstance(eng, Engine)
    return eng


def test_first_step_logits_match_naive_forward(model_dir, tokenizer, suffixes, prefix):
    """Cached prefix + middle padding gives the logits of a plain forward of each full prompt."""
    eng = _engine(model_dir)
    cached = eng.first_step_logits(prefix, suffixes)
    assert eng.stats["prefix_computations"] == 1 and eng.stats["prefix_misses"] == 0
    naive = []
    for s in suffixes:
        ids = tokenizer(
            chat_texts(tokenizer, [prefix + s])[0], add_special_tokens=False, return_tensors="pt"
        )["input_ids"]
        with torch.no_grad():
            naive.append(eng.model(input_ids=ids).logits[0, -1])
    naive_t = torch.stack(naive)
    assert cached.shape == naive_t.shape
    torch.testing.assert_close(cached, naive_t, atol=1e-4, rtol=0)
    # the left-padded path (no cache) agrees too
    plain = _engine(model_dir, prefix_cache=False).first_step_logits(prefix, suffixes)
    torch.testing.assert_close(plain, naive_t, atol=1e-4, rtol=0)


@pytest.mark.parametrize("constrained", [False, True])
def test_greedy_same_with_and_without_prefix_cache(model_dir, suffixes, pools, constrained, prefix):
    kw = {"constrained": constrained, "max_names": 6, "max_new_tokens": 40 if constrained else 12}
    allowed = pools if constrained else None
    with_cache = _engine(model_dir, **kw).generate(prefix, suffixes, allowed)
    without = _engine(model_dir, prefix_cache=False, **kw).generate(prefix, suffixes, allowed)
    assert [g.text for g in with_cache] == [g.text for g in without]
    assert [g.generated_tokens for g in with_cache] == [g.generated_tokens for g in without]


def test_beam_same_with_and_without_prefix_cache(model_dir, suffixes, pools, prefix):
    kw = {
        "constrained": True,
        "strategy": "beam",
        "num_beams": 3,
        "max_names": 4,
        "max_new_tokens": 24,
        "batch_size": 3,
    }
    with_cache = _engine(model_dir, **kw).generate(prefix, suffixes, pools)
    without = _engine(model_dir, prefix_cache=False, **kw).generate(prefix, suffixes, pools)
    assert [g.text for g in with_cache] == [g.text for g in without]


VOCAB = ["Apparel / Athletic", "Beauty / Makeup", "Home / Kitchen", "Electronics / Devices"]


def test_constrained_answers_parse_and_use_allowed_names(model_dir, suffixes, pools, prefix):
    eng = _engine(model_dir, constrained=True, max_names=6, max_new_tokens=120, batch_size=4)
    gens = eng.generate(prefix, suffixes, pools, VOCAB)
    assert len(gens) == len(suffixes)
    for g, pool in zip(gens, pools, strict=True):
        parsed = parse_answer(g.text, max_advertisers=6)
        assert parsed.status == "ok", g.text
        assert len(parsed.advertisers) == min(6, len(pool)) and parsed.n_duplicates == 0
        assert set(parsed.advertisers) <= set(pool), (parsed.advertisers, pool)
        assert 1 <= len(parsed.interests) <= 5 and set(parsed.interests) <= set(VOCAB)
        assert g.status == ("ok" if len(pool) >= 6 else "short_pool")
    assert eng.stats["status"] == {s: [g.status for g in gens].count(s) for s in {g.status for g in gens}}
    with pytest.raises(ValueError):
        eng.generate(prefix, suffixes)  # constrained without allowed names


def test_bad_rows_get_a_status_not_a_crash(model_dir, tokenizer, suffixes, prefix, catalogue):
    """Empty pool, a pool shorter than max_names, names with '|', '<', '&' and non-Latin letters, a budget
    too small for the answer, and a model that wants to stop at once: each row gets its status."""
    eng = _engine(model_dir, constrained=True, max_names=5, max_new_tokens=120, batch_size=8)
    eos = tokenizer.eos_token_id
    with torch.no_grad():  # a model that puts all its mass on EOS: the grammar forbids stopping early
        eng.model.lm_head.weight[eos] += 50.0
    weird = ["A|B", "Tom <Toys>", "H&M", "東京ストア", "Ünïcødé", "Ça & Là", "C++", "[x]"]
    pools = [[], ["  ", "A|B"], catalogue[:3], weird, catalogue[:12], catalogue[:12]]
    gens = eng.generate(prefix, suffixes, pools, VOCAB)
    assert [g.status for g in gens[:5]] == ["empty_pool", "empty_pool", "short_pool", "ok", "ok"]
    assert gens[0].generated_tokens == 0 and parse_answer(gens[0].text).advertisers == []
    short = parse_answer(gens[2].text)
    assert short.status == "ok" and sorted(short.advertisers) == sorted(catalogue[:3])
    odd = parse_answer(gens[3].text, max_advertisers=5)
    assert (
        odd.status == "ok"
        and len(odd.advertisers) == 5
        and set(odd.advertisers) <= set(weird) - {"A|B", "[x]"}
    )
    tight = _engine(model_dir, constrained=True, max_names=5, max_new_tokens=15).generate(
        prefix, suffixes[:2], [catalogue[:12]] * 2, VOCAB
    )
    assert [g.status for g in tight] == ["truncated", "truncated"]


def test_stats_count_computed_prompt_tokens(model_dir, suffixes, prefix):
    cached = _engine(model_dir)
    gens = cached.generate(prefix, suffixes)
    again = cached.generate(prefix, suffixes[:2])  # same prefix: its cache is reused, unchanged
    assert [g.text for g in again] == [g.text for g in gens[:2]]
    st = cached.stats
    assert st["prefix_computations"] == 1 and st["prefix_tokens"] > 0 and st["users"] == 8
    assert st["computed_prompt_tokens"] < st["prompt_tokens"]
    assert all(g.computed_prompt_tokens == g.prompt_tokens - st["prefix_tokens"] for g in gens)
    assert all(0 < g.generated_tokens <= 12 for g in gens)
    naive = _engine(model_dir, prefix_cache=False)
    ngens = naive.generate(prefix, suffixes)
    assert naive.stats["computed_prompt_tokens"] == naive.stats["prompt_tokens"]
    assert naive.stats["prefix_computations"] == 0
    assert [g.prompt_tokens for g in ngens] == [g.prompt_tokens for g in gens]
    assert all(g.computed_prompt_tokens == g.prompt_tokens for g in ngens)
    assert naive.stats["generated_tokens"] == sum(g.generated_tokens for g in ngens)


def test_prefix_token_mismatch_falls_back_to_naive(model_dir, prefix):
    """A BPE merge across the boundary ("Nik" + "e") with no safety margin: that user runs uncached."""
    cut = prefix + "Top brand: Nik"
    sufs = ["e shoes and more", " shoes only", "e"]
    eng = _engine(model_dir, prefix_margin_tokens=0)
    gens = eng.generate(cut, sufs)
    assert eng.stats["prefix_misses"] >= 1
    assert gens[1].computed_prompt_tokens < gens[1].prompt_tokens  # " shoes" does not merge: cached
    assert gens[0].computed_prompt_tokens == gens[0].prompt_tokens
    ref = _engine(model_dir, prefix_cache=False).generate(cut, sufs)
    assert [g.text for g in gens] == [g.text for g in ref]


def test_model_version_stable_and_content_addressed(model_dir, tokenizer, tiny_llama, tmp_path):
    v1 = model_version(model_dir)
    assert v1 == model_version(str(model_dir)) == _engine(model_dir).model_version
    name, digest = v1.split("@")
    assert name == model_dir.name and re.fullmatch(r"[0-9a-f]{12}", digest)
    copy_dir = tmp_path / model_dir.name
    tiny_llama(len(tokenizer), seed=0).save_pretrained(copy_dir)
    assert model_version(copy_dir) == v1  # same bytes, same version
    tiny_llama(len(tokenizer), seed=1).save_pretrained(copy_dir)  # new weights, same path
    assert model_version(copy_dir) != v1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        model_version(empty)  # no weight files


def test_unknown_engine_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        make_engine(EngineConfig(kind="tgi"))
