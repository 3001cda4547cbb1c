"""The answer grammar: spec cleaning, the interest vocabulary and the EBNF that xgrammar compiles, model-free.

The repeat ban and the random walks through grammar and ban are in test_constrain.py.
"""

from __future__ import annotations

import pytest

from llm_predictor.data.templates import wrap_as_answer
from llm_predictor.infer.constrain import compiler_for
from llm_predictor.infer.grammar import (
    answer_ebnf,
    answer_spec,
    clean_items,
    interest_label,
    interest_vocabulary,
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
