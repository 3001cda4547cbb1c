"""Decoding: candidate counts, and grammar-constrained outputs with a tiny random Llama.

Only the real SmolLM2 *tokenizer* is used (no weights), so the grammar sees real BPE tokenizations.
"""

from __future__ import annotations

import random

import pytest

from llm_predictor.data.parsing import parse_answer
from llm_predictor.data.templates import wrap_as_answer
from llm_predictor.infer.decoding import DecodeConfig, generate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_model(tokenizer, tiny_llama):
    return tiny_llama(len(tokenizer), seed=0)


@pytest.fixture(scope="module")
def rows(catalogue):
    rng = random.Random(7)
    words = ["user", "bought", "shoes", "lipstick", "tv", "sofa", "searched", "nike.com", "|", "<answer>"]
    prompts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(20)]
    allowed = [rng.sample(catalogue, rng.randint(4, 12)) for _ in range(20)]
    return prompts, allowed


def _check_single(outs, allowed, n_expected=1):
    for cands, pool in zip(outs, allowed, strict=True):
        assert 1 <= len(cands) <= n_expected
        assert len(set(cands)) == len(cands)
        for c in cands:
            assert c in pool, (c, pool)


def _check_list(outs, allowed, max_names, n_expected=1):
    for cands, pool in zip(outs, allowed, strict=True):
        assert len(cands) == n_expected
        for c in cands:
            names = c.split("|")
            assert 1 <= len(names) <= max_names
            assert len(set(names)) == len(names), c
            assert all(n in pool for n in names), (c, pool)


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
def test_constrained_single(tiny_model, tokenizer, rows, strategy):
    prompts, allowed = rows
    cfg = DecodeConfig(
        strategy=strategy,
        constrained=True,
        mode="single",
        max_new_tokens=16,
        batch_size=10,
        temperature=1.5,
        seed=1,
    )
    outs = generate(tiny_model, tokenizer, prompts, cfg, allowed)
    assert len(outs) == len(prompts)
    _check_single(outs, allowed)


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
def test_constrained_list(tiny_model, tokenizer, rows, strategy):
    prompts, allowed = rows
    n = 2 if strategy == "sample" else 1
    cfg = DecodeConfig(
        strategy=strategy,
        constrained=True,
        mode="list",
        max_names=6,
        max_new_tokens=48,
        batch_size=10,
        num_return_sequences=n,
        temperature=2.0,
        top_p=0.95,
        seed=3,
    )
    outs = generate(tiny_model, tokenizer, prompts, cfg, allowed)
    _check_list(outs, allowed, max_names=6, n_expected=n)
    # the caller wraps the plain list as the XML answer
    names = outs[0][0].split("|")
    parsed = parse_answer(wrap_as_answer(names), max_advertisers=20)
    assert parsed.status == "ok" and parsed.advertisers == names


def test_constrained_list_min_names(tiny_model, tokenizer, rows):
    prompts, allowed = rows
    cfg = DecodeConfig(
        constrained=True, mode="list", min_names=4, max_names=6, max_new_tokens=48, batch_size=20
    )
    outs = generate(tiny_model, tokenizer, prompts, cfg, allowed)
    _check_list(outs, allowed, max_names=6)
    assert all(len(c[0].split("|")) >= 4 for c in outs)  # every pool has >= 4 names and the budget fits


def test_constrained_list_tight_budget_is_cut_not_broken(tiny_model, tokenizer, rows):
    """Out of tokens mid-list: the candidates stay prefixes of valid lists (the grammar never lets a name
    go wrong), and in 'single' mode a cut name is dropped rather than returned."""
    prompts, allowed = rows
    cfg = DecodeConfig(
        strategy="sample",
        constrained=True,
        mode="list",
        max_new_tokens=7,
        batch_size=20,
        temperature=3.0,
        seed=5,
    )
    outs = generate(tiny_model, tokenizer, prompts, cfg, allowed)
    for cands, pool in zip(outs, allowed, strict=True):
        for c in cands:
            *whole, last = c.split("|")
            assert all(n in pool for n in whole) and any(n.startswith(last) for n in pool), (c, pool)
    single = generate(
        tiny_model,
        tokenizer,
        prompts,
        DecodeConfig(
            strategy="sample", constrained=True, mode="single", max_new_tokens=1, temperature=3.0, seed=5
        ),
        allowed,
    )
    for cands, pool in zip(single, allowed, strict=True):
        assert all(c in pool for c in cands)


def test_constrained_answer_mode(tiny_model, tokenizer, rows):
    """'answer' mode: the whole XML, 1-5 interests of the vocabulary, exactly max_names distinct names."""
    prompts, allowed = rows
    vocab = ["Apparel / Athletic", "Beauty / Makeup", "Home / Kitchen"]
    cfg = DecodeConfig(constrained=True, mode="answer", max_names=4, max_new_tokens=120, batch_size=10)
    outs = generate(tiny_model, tokenizer, prompts, cfg, allowed, vocab)
    for cands, pool in zip(outs, allowed, strict=True):
        parsed = parse_answer(cands[0], max_advertisers=4)
        assert parsed.status == "ok" and parsed.n_duplicates == 0, cands
        assert len(parsed.advertisers) == 4 and set(parsed.advertisers) <= set(pool)
        assert 1 <= len(parsed.interests) <= 3 and set(parsed.interests) <= set(vocab)


def test_constrained_shared_pool_and_beams(tiny_model, tokenizer, rows, catalogue):
    prompts, _ = rows
    pool = catalogue[:10]
    cfg = DecodeConfig(
        strategy="beam",
        num_beams=3,
        num_return_sequences=3,
        constrained=True,
        mode="single",
        max_new_tokens=12,
        batch_size=5,
    )
    outs = generate(tiny_model, tokenizer, prompts[:5], cfg, pool)
    _check_single(outs, [pool] * 5, n_expected=3)
    # K beams -> K distinct names (Table 2 "SFT + beam search"): in 'single' mode only canonical tokenizations
    assert all(len(c) == 3 for c in outs)


def test_unconstrained_candidate_counts(tiny_model, tokenizer, rows):
    prompts, _ = rows
    greedy = generate(tiny_model, tokenizer, prompts[:4], DecodeConfig(max_new_tokens=6))
    assert [len(c) for c in greedy] == [1] * 4 and all(isinstance(c[0], str) for c in greedy)
    beam = generate(
        tiny_model,
        tokenizer,
        prompts[:4],
        DecodeConfig(strategy="beam", num_beams=3, num_return_sequences=3, max_new_tokens=6),
    )
    assert [len(c) for c in beam] == [3] * 4
    samples = generate(
        tiny_model,
        tokenizer,
        prompts[:4],
        DecodeConfig(strategy="sample", num_return_sequences=2, max_new_tokens=6),
    )
    assert [len(c) for c in samples] == [2] * 4
    with pytest.raises(ValueError):
        generate(tiny_model, tokenizer, prompts[:1], DecodeConfig(constrained=True))  # no allowed names
    with pytest.raises(ValueError):
        generate(tiny_model, tokenizer, prompts[:1], DecodeConfig(num_return_sequences=2))  # greedy K>1


def test_constrained_beam_fewer_returns_than_beams(tiny_model, tokenizer, rows):
    prompts, allowed = rows
    cfg = DecodeConfig(
        strategy="beam",
        num_beams=4,
        num_return_sequences=2,
        constrained=True,
        mode="single",
        max_new_tokens=12,
        batch_size=3,
    )
    outs = generate(tiny_model, tokenizer, prompts[:3], cfg, allowed[:3])
    _check_single(outs, allowed[:3], n_expected=2)
