"""The repeat ban (DistinctItems) over the answer grammar, model-free.

Random walks pick uniformly among the tokens the grammar *and* the repeat ban allow (real SmolLM2
tokenizer, so names meet real BPE pieces, also ones that merge '|' with letters); every finished walk
must be an answer the parser reads as 'ok' with distinct names of the pool.
"""

from __future__ import annotations

import random

import pytest
import torch

from llm_predictor.data.parsing import parse_answer
from llm_predictor.data.templates import wrap_as_answer
from llm_predictor.infer.constrain import DistinctItems, compiler_for, token_bytes
from llm_predictor.infer.grammar import answer_ebnf, answer_spec

VOCAB = ["Apparel / Athletic", "Beauty / Makeup", "Home / Kitchen"]


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
