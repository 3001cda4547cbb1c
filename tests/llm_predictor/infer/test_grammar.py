"""The answer grammar: spec cleaning, the EBNF that xgrammar compiles, and the repeat ban, model-free.

Random walks pick uniformly among the tokens the grammar *and* the repeat ban allow (real SmolLM2
tokenizer, so names meet real BPE pieces, also ones that merge '|' with letters); every finished walk
must be an answer the parser reads as 'ok' with distinct names of the pool.
"""

from __future__ import annotations

import random

import pytest
import torch

from llm_predictor.data.parsing import parse_answer
from llm_predictor.data.prompts import wrap_as_answer
from llm_predictor.infer.grammar import (
    DistinctItems,
    answer_ebnf,
    answer_spec,
    clean_items,
    compiler_for,
    interest_label,
    interest_vocabulary,
    token_bytes,
)

VOCAB = ["Apparel / Athletic", "Beauty / Makeup", "Home / Kitchen"]


def test_clean_items_drops_what_a_list_cannot_hold():
    kept, dropped = clean_items(
        ["Nike", " Nike ", "nike", "A|B", "[x]", "", None, "H&M", "Tom <Toys>", "東京"]
    )
    assert kept == ["Nike", "H&M", "Tom <Toys>", "東京"]
    assert set(dropped) >= {"A|B", "[x]", "nike"}


def test_interest_vocabulary_from_category_paths():
    assert interest_label("Apparel > Athletic") == "Apparel / Athletic"
    assert interest_label(" Home >  Kitchen|x ") == "Home / Kitchen / x"
    assert interest_vocabulary(["B > C", "A > B", "A > B", None, " "]) == ["A / B", "B / C"]


def test_spec_counts_and_problems():
    spec = answer_spec(["a", "b", "c"], VOCAB, max_names=20, max_interests=5)
    assert (spec.min_names, spec.max_names, spec.min_interests, spec.max_interests) == (3, 3, 1, 3)
    assert spec.problem == "short_pool"
    assert answer_spec([], VOCAB).problem == "empty_pool"
    assert answer_spec(["a"] * 30).problem == "short_pool"  # one usable name
    assert answer_spec([f"n{i}" for i in range(25)], VOCAB).problem is None
    assert answer_spec(["a", "b"], mode="single").max_names == 1
    with pytest.raises(ValueError):
        answer_ebnf(answer_spec([]))
    with pytest.raises(ValueError):
        answer_spec(["a"], mode="xml")


def test_wrap_as_answer_is_in_the_grammar(tokenizer):
    import xgrammar as xgr

    compiler, _ = compiler_for(tokenizer, len(tokenizer), [tokenizer.eos_token_id])
    names = ["Nike", "H&M", 'Say "hi"', "back\\slash", "東京"]
    spec = answer_spec(names, VOCAB, max_names=5)
    m = xgr.GrammarMatcher(compiler.compile_grammar(answer_ebnf(spec)))
    assert m.accept_string(wrap_as_answer(names[::-1], VOCAB[:2])) and m.is_completed()
    for bad in (
        wrap_as_answer(names[:4], VOCAB[:1]),  # too few names
        wrap_as_answer(names, []),  # no interest
        wrap_as_answer(["Adidas", *names[1:]], VOCAB[:1]),
    ):  # outside the pool
        m = xgr.GrammarMatcher(compiler.compile_grammar(answer_ebnf(spec)))
        assert not (m.accept_string(bad) and m.is_completed()), bad


def _walk(tokenizer, spec, rng: random.Random, max_steps: int = 400) -> tuple[list[int], bool]:
    import xgrammar as xgr

    eos = tokenizer.eos_token_id
    vocab = len(tokenizer)
    compiler, info = compiler_for(tokenizer, vocab, [eos])
    m = xgr.GrammarMatcher(compiler.compile_grammar(answer_ebnf(spec)))
    ban = DistinctItems(spec, token_bytes(info, vocab), [eos])
    mask = xgr.allocate_token_bitmask(1, vocab)
    idx = torch.arange(vocab)
    seq: list[int] = []
    for _ in range(max_steps):
        m.fill_next_token_bitmask(mask, 0)
        allowed = idx[((mask[0][idx >> 5] >> (idx & 31)) & 1).bool()].tolist()
        banned = set(ban.banned(seq, allowed))
        choice = [t for t in allowed if t not in banned]
        assert choice, (spec, tokenizer.decode(seq))  # the ban never leaves a row without a way on
        tok = rng.choice(choice)
        if tok == eos:
            return seq, True
        assert m.accept_token(tok)
        seq.append(tok)
    return seq, False


@pytest.mark.parametrize("mode", ["answer", "list"])
def test_random_walks_give_distinct_names_of_the_pool(tokenizer, catalogue, mode):
    rng = random.Random(11)
    for _ in range(12):
        pool = rng.sample(catalogue, rng.randint(2, 12))
        spec = answer_spec(pool, VOCAB, mode=mode, max_names=rng.randint(1, 6), max_interests=3)
        seq, finished = _walk(tokenizer, spec, rng)
        assert finished
        text = tokenizer.decode(seq, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if mode == "list":
            text = wrap_as_answer(text.split("|"), VOCAB[:1])
        parsed = parse_answer(text, max_advertisers=20)
        assert parsed.status == "ok" and parsed.n_duplicates == 0, text
        assert len(parsed.advertisers) == spec.max_names and set(parsed.advertisers) <= set(pool)
        if mode == "answer":
            assert 1 <= len(parsed.interests) <= 3 and set(parsed.interests) <= set(VOCAB)


def test_repeat_ban_handles_names_that_prefix_others(tokenizer):
    """'Apple' written: '|Apple' may still start 'Apple Music', but may not close as 'Apple' again."""
    eos = tokenizer.eos_token_id
    _, info = compiler_for(tokenizer, len(tokenizer), [eos])
    tb = token_bytes(info, len(tokenizer))
    spec = answer_spec(["Apple", "Apple Music", "Nike"], mode="list", max_names=3)
    ban = DistinctItems(spec, tb, [eos])
    written = tokenizer("Apple|Apple", add_special_tokens=False)["input_ids"]
    sep = tokenizer("|", add_special_tokens=False)["input_ids"]
    music = tokenizer(" Music", add_special_tokens=False)["input_ids"][:1]
    assert set(ban.banned(written, [*sep, eos])) == {*sep, eos}
    assert ban.banned(written, music) == []
