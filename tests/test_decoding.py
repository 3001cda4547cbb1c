"""Decoding: candidate counts, and catalogue-constrained outputs with a tiny random Llama.

Only the real SmolLM2 *tokenizer* is used (no weights), so the tries see real BPE tokenizations.
"""

from __future__ import annotations

import random

import pytest

from llm_predictor.decoding import (
    DecodeConfig,
    NameTokenizer,
    NameTrie,
    TrieLogitsProcessor,
    generate,
    wrap_as_answer,
)
from llm_predictor.parsing import parse_answer

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


def test_constrained_list_tight_budget_never_cuts_a_name(tiny_model, tokenizer, rows):
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
    _check_list(outs, allowed, max_names=20)


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
    assert all(len(c) == 3 for c in outs)  # K beams -> K distinct names (Table 2 "SFT + beam search")


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


class _MergingTokenizer:
    """Character tokens, except that the separator merges with the next character (as some BPEs do)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {"<eos>": 0, "<pad>": 1}

    def _id(self, piece: str) -> int:
        return self.vocab.setdefault(piece, len(self.vocab))

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        pieces, i = [], 0
        while i < len(text):
            if text[i] == "|" and i + 1 < len(text):
                pieces.append(text[i : i + 2])
                i += 2
            else:
                pieces.append(text[i])
                i += 1
        return {"input_ids": [self._id(p) for p in pieces]}


def _random_walk(proc: TrieLogitsProcessor, row: int, max_new: int, rng: random.Random) -> list[int]:
    seq: list[int] = []
    for step in range(max_new):
        s = proc.state(row, seq)
        if s.done:
            break
        tok = rng.choice(proc.allowed(proc.rows[row].trie, s, max_new - step))
        seq.append(tok)
        if tok == proc.eos:
            break
    return seq


@pytest.mark.parametrize("merge", [False, True])
def test_trie_random_walks(tokenizer, catalogue, merge):
    """Model-free: any path the mask allows spells allowed names, also with a merging separator."""
    tok = _MergingTokenizer() if merge else tokenizer
    eos = 0 if merge else tokenizer.eos_token_id
    name_tok = NameTokenizer(tok, "|")
    rng = random.Random(11)
    for _ in range(30):
        pool = rng.sample(catalogue, rng.randint(2, 10))
        max_new = rng.randint(5, 60)
        for list_mode in (False, True):
            trie = NameTrie(pool, name_tok, list_mode)
            proc = TrieLogitsProcessor([trie], 1, 0, eos, eos, max_new, list_mode, max_names=4)
            seq = _random_walk(proc, 0, max_new, rng)
            assert len(seq) <= max_new
            names = proc.names(0, seq)
            if min(len(name_tok.first(n)) for n in pool) + 1 > max_new:
                continue  # nothing fits the budget
            assert names, (pool, seq)
            assert all(n in pool for n in names) and len(set(names)) == len(names)
            assert len(names) <= (4 if list_mode else 1)


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
