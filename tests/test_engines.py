"""Inference engines: the transformers engine's shared-prefix KV cache against the naive path, constrained
answers, counters, model versions, the vLLM answer regex and the vLLM import hint.

A tiny random Llama with the real SmolLM2 tokenizer (conftest.py fixtures, as in test_decoding.py), saved to
a temp folder so that make_engine loads it by path.
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from llm_predictor.decoding import chat_texts, wrap_as_answer
from llm_predictor.engines import (
    Engine,
    EngineConfig,
    TransformersEngine,
    answer_regex,
    make_engine,
    model_version,
)
from llm_predictor.parsing import parse_answer

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


def test_constrained_answers_parse_and_use_allowed_names(model_dir, suffixes, pools, prefix):
    eng = _engine(model_dir, constrained=True, max_names=6, max_new_tokens=48, batch_size=4)
    gens = eng.generate(prefix, suffixes, pools)
    assert len(gens) == len(suffixes)
    for g, pool in zip(gens, pools, strict=True):
        parsed = parse_answer(g.text, max_advertisers=6)
        assert parsed.status == "ok", g.text
        assert 1 <= len(parsed.advertisers) <= 6
        assert set(parsed.advertisers) <= set(pool), (parsed.advertisers, pool)
        assert len(set(parsed.advertisers)) == len(parsed.advertisers)
    # min_names defaults to max_names: every pool has >= 5 names, so at least 5 are written
    assert all(len(parse_answer(g.text).advertisers) >= 5 for g in gens)
    with pytest.raises(ValueError):
        eng.generate(prefix, suffixes)  # constrained without allowed names


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


NAMES = ["Nike", "H&M", "Yahoo!", "A.B (C)", "C++", "$5 Store", "a*b?", "[x]", "Nike Golf", "back\\slash"]


def _answer(names: list[str], interests: list[str] = ()) -> str:
    return wrap_as_answer(names, interests)


def test_answer_regex_matches_valid_answers():
    rx = re.compile(answer_regex(NAMES, max_names=5, max_interests=5))
    assert rx.fullmatch(_answer(["Nike"]))
    assert rx.fullmatch(_answer(["A.B (C)", "C++", "$5 Store", "a*b?", "[x]"], ["running", "home decor"]))
    assert rx.fullmatch(_answer(["Nike Golf", "Nike", "back\\slash"], ["a", "b", "c", "d", "e"]))
    parsed = parse_answer(_answer(["H&M", "Yahoo!"], ["fashion"]), max_advertisers=5)
    assert parsed.status == "ok" and parsed.advertisers == ["H&M", "Yahoo!"]


def test_answer_regex_rejects_invalid_answers():
    rx = re.compile(answer_regex(NAMES, max_names=5, max_interests=2))
    assert not rx.fullmatch(_answer(["Adidas"]))  # outside the pool
    assert not rx.fullmatch(_answer(["Nike", "Adidas"]))
    assert not rx.fullmatch(_answer(["AxB (C)"]))  # '.' is literal
    assert not rx.fullmatch(_answer(["CC"]))  # '+' is literal
    assert not rx.fullmatch(_answer([]))  # at least one name
    assert not rx.fullmatch(_answer(["Nike"] * 6))  # at most max_names
    assert not rx.fullmatch(_answer(["Nike"], ["a", "b", "c"]))  # at most max_interests
    assert not rx.fullmatch(_answer(["Nike"], ["<b>"]))  # no tags inside an interest
    assert not rx.fullmatch("Nike")
    # names with the separator are dropped; an empty pool is an error
    assert not re.fullmatch(answer_regex(["Nike", "A|B"], 3), _answer(["A|B"]))
    with pytest.raises(ValueError):
        answer_regex(["", "  "], 3)


def test_vllm_engine_without_vllm_raises_install_hint(model_dir):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(ImportError, match=r"pip install 'adprior\[gpu\]'"):
        make_engine(EngineConfig(kind="vllm", model=str(model_dir)))
    with pytest.raises(ValueError):
        make_engine(EngineConfig(kind="tgi"))


class _FakeLLM:
    """Stands in for vllm.LLM: records its calls, answers every prompt with the same completion."""

    def __init__(self, model: str, **kw) -> None:
        from transformers import AutoTokenizer

        self.model, self.kw, self.calls = model, kw, []
        self.tok = AutoTokenizer.from_pretrained(model)

    def get_tokenizer(self):
        return self.tok

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        text = wrap_as_answer(["Nike"])
        return [
            SimpleNamespace(
                prompt_token_ids=p["prompt_token_ids"],
                num_cached_tokens=10,
                outputs=[SimpleNamespace(text=text, token_ids=[5, 6, 7])],
            )
            for p in prompts
        ]

    def beam_search(self, prompts, params):
        self.calls.append((prompts, params))
        gen = self.tok("hello there", add_special_tokens=False)["input_ids"]
        return [
            SimpleNamespace(sequences=[SimpleNamespace(tokens=[*p["prompt_token_ids"], *gen])])
            for p in prompts
        ]


def _fake_vllm_api() -> SimpleNamespace:
    return SimpleNamespace(
        LLM=_FakeLLM,
        SamplingParams=lambda **kw: kw,
        BeamSearchParams=lambda **kw: kw,
        StructuredOutputsParams=lambda **kw: kw,
    )


def test_vllm_engine_glue_with_a_fake_vllm(model_dir, tokenizer, monkeypatch, prefix):
    """Prompts, per-row regexes, empty pools, beam search and counters, without vLLM (no GPU here)."""
    import llm_predictor.engines as engines

    monkeypatch.setattr(engines, "_vllm_api", _fake_vllm_api)
    eng = make_engine(EngineConfig(kind="vllm", model=str(model_dir), max_new_tokens=64, max_names=3))
    assert isinstance(eng, engines.VLLMEngine) and eng.model_version == model_version(model_dir)
    assert eng.llm.kw["enable_prefix_caching"] is True
    gens = eng.generate(
        prefix, ["#Input\n- a", "#Input\n- b c d", "#Input\n- e"], [["Nike", "H&M"], ["A|B"], ["Nike"]]
    )
    prompts, params = eng.llm.calls[0]
    assert len(prompts) == len(params) == 2  # the row with no usable name is not sent
    full = tokenizer(chat_texts(tokenizer, [prefix + "#Input\n- a"])[0], add_special_tokens=False)[
        "input_ids"
    ]
    assert prompts[0]["prompt_token_ids"] == full
    assert params[0]["temperature"] == 0.0 and params[0]["max_tokens"] == 64
    assert re.fullmatch(params[0]["structured_outputs"]["regex"], gens[0].text)
    assert not re.fullmatch(params[1]["structured_outputs"]["regex"], wrap_as_answer(["H&M"]))
    assert gens[0].prompt_tokens == len(full) and gens[0].computed_prompt_tokens == len(full) - 10
    assert gens[1].text == wrap_as_answer([]) and gens[1].generated_tokens == 0
    assert eng.stats["users"] == 3 and eng.stats["generated_tokens"] == 6
    beam = make_engine(
        EngineConfig(kind="vllm", model=str(model_dir), strategy="beam", num_beams=4, constrained=False)
    )
    assert [g.text for g in beam.generate(prefix, ["#Input\n- a"])] == ["hello there"]
    assert beam.llm.calls[0][1] == {"beam_width": 4, "max_tokens": 256}
    with pytest.raises(ValueError):
        make_engine(EngineConfig(kind="vllm", model=str(model_dir), strategy="beam", num_beams=2))
