"""Unit tests of llm_predictor.data.parsing: tolerant <answer> parsing that never raises."""

from __future__ import annotations

import random
import time

import pytest

from llm_predictor.data.parsing import (
    TAGS,
    ParsedAnswer,
    parse_answer,
    parse_batch,
    parse_list,
    parse_single,
    summarize,
)

NAMES = [f"Advertiser {i}" for i in range(1, 21)]
A3 = (
    "<answer>\n<interests>\n[running|skin care|home decor]\n</interests>\n"
    "<advertiser_names>\n" + "|".join(NAMES) + "\n</advertiser_names>\n</answer>"
)
A5 = (
    "<answer>\n<advertiser_names>\n[" + "|".join(NAMES[:5]) + "|\n" + "|".join(NAMES[5:]) + "]\n"
    "</advertiser_names>\n<interests>\n[running|skin care|home decor]\n</interests>\n</answer>"
)


def test_a3_order_without_brackets() -> None:
    p = parse_answer(A3)
    assert p.status == "ok"
    assert p.advertisers == NAMES
    assert p.interests == ["running", "skin care", "home decor"]
    assert p.n_advertisers_raw == 20 and p.n_duplicates == 0
    assert p.notes == []


def test_a5_order_with_brackets_and_newlines() -> None:
    p = parse_answer(A5)
    assert p.status == "ok"
    assert p.advertisers == NAMES
    assert p.interests == ["running", "skin care", "home decor"]


def test_text_around_and_think_block() -> None:
    text = (
        "<think>The user likes running. Maybe <answer><advertiser_names>Wrong</advertiser_names></answer>"
        "</think>\nSure! Here is my answer:\n" + A3 + "\nHope this helps."
    )
    p = parse_answer(text)
    assert p.status == "ok" and p.advertisers == NAMES


def test_last_answer_wins_when_format_is_echoed() -> None:
    echoed = "<answer>\n<interests>\n[interest 1]\n</interests>\n</answer>\n" + A5
    assert parse_answer(echoed).advertisers == NAMES


def test_whitespace_ampersand_and_case() -> None:
    text = (
        "<Answer>  <interests> [ beauty ] </interests>\n<ADVERTISER_NAMES>\n"
        "  [ Johnson & Johnson |  H&M |\n\n AT&amp;T | Barnes &amp; Noble | A<B Co |]  "
        "</advertiser_names></answer>"
    )
    p = parse_answer(text)
    assert p.status == "ok"
    assert p.advertisers == ["Johnson & Johnson", "H&M", "AT&T", "Barnes & Noble", "A<B Co"]
    assert p.interests == ["beauty"]


def test_duplicates_are_removed_case_insensitively() -> None:
    text = "<answer><interests>[a|A|b]</interests><advertiser_names>[Nike|nike|Adidas|NIKE|Puma]</advertiser_names></answer>"
    p = parse_answer(text)
    assert p.advertisers == ["Nike", "Adidas", "Puma"]
    assert p.n_advertisers_raw == 5 and p.n_duplicates == 2 and p.n_advertisers_unique == 3
    assert p.interests == ["a", "b"]
    assert p.status == "ok"
    assert any("duplicate" in n for n in p.notes) and any("expected 20" in n for n in p.notes)


def test_truncated_output_is_partial() -> None:
    cut = A3[: A3.index("Advertiser 8|") + len("Advertiser 8|Adve")]
    p = parse_answer(cut)
    assert p.status == "partial"
    assert p.advertisers[:7] == NAMES[:7] and p.advertisers[-1] == "Adve"
    assert p.interests == ["running", "skin care", "home decor"]
    assert any("missing </advertiser_names>" in n for n in p.notes)
    # Cut inside the interests: no advertiser list at all.
    assert parse_answer(A3[:40]).status == "unparseable"


def test_missing_pieces() -> None:
    # Missing closing </interests>: children misnest, both still read.
    p = parse_answer("<answer><interests>[a|b]<advertiser_names>x|y</advertiser_names></answer>")
    assert p.status == "partial" and p.advertisers == ["x", "y"] and p.interests == ["a", "b"]
    # No interests child.
    p = parse_answer("<answer><advertiser_names>x|y</advertiser_names></answer>")
    assert p.status == "partial" and p.advertisers == ["x", "y"] and p.interests == []
    # No <answer> wrapper.
    p = parse_answer("<interests>i</interests><advertiser_names>x|y</advertiser_names>")
    assert p.status == "partial" and p.advertisers == ["x", "y"]
    # Empty list.
    p = parse_answer("<answer><interests>[]</interests><advertiser_names>[]</advertiser_names></answer>")
    assert p.status == "unparseable" and p.advertisers == []


def test_limits() -> None:
    many = "|".join(f"A{i}" for i in range(30))
    p = parse_answer(
        f"<answer><interests>[{'|'.join('abcdefg')}]</interests><advertiser_names>{many}</advertiser_names></answer>"
    )
    assert len(p.advertisers) == 20 and p.n_advertisers_raw == 30 and p.n_advertisers_unique == 30
    assert p.interests == list("abcde") and p.n_interests_raw == 7
    assert parse_answer(A3, max_advertisers=5).advertisers == NAMES[:5]


def test_numbering_and_quotes_in_items() -> None:
    p = parse_answer(
        '<answer><interests>x</interests><advertiser_names>\n1. "Nike"\n2) Adidas\n- 3M\n</advertiser_names></answer>'
    )
    assert p.advertisers == ["Nike", "Adidas", "3M"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "no tags at all",
        "Nike|Adidas|Puma",
        "</answer></advertiser_names><answer>",
        "<answer>" * 3000 + "<advertiser_names>a",
        "<answer><answer><interests><advertiser_names><interests></answer>",
        "<![CDATA[<answer>]]><!DOCTYPE x [<!ENTITY a 'b'>]>&a;&#0;&#xD800;",
        "\x00\x01\ud800\udfff\ufffe" * 100,
        "&" * 1000,
    ],
)
def test_never_raises_on_odd_input(text: str) -> None:
    p = parse_answer(text)
    assert isinstance(p, ParsedAnswer) and p.status in ("ok", "partial", "unparseable")
    assert isinstance(parse_single(text), ParsedAnswer)


def test_bare_list_only_when_allowed() -> None:
    assert parse_answer("Nike|Adidas|Puma").status == "unparseable"
    p = parse_list("Nike|Adidas|Puma|")
    assert p.status == "partial" and p.advertisers == ["Nike", "Adidas", "Puma"]
    assert parse_list(A3).advertisers == NAMES


def test_garbage_10k_is_fast_and_safe() -> None:
    rng = random.Random(1234)
    alphabet = "<>/|[]&;#answerintsdv_ \n\tAZ"
    for _ in range(5):
        garbage = "".join(rng.choice(alphabet) for _ in range(10_000))
        start = time.perf_counter()
        p = parse_answer(garbage)
        assert time.perf_counter() - start < 0.05
        assert p.status in ("ok", "partial", "unparseable")
    structured = ("<answer><advertiser_names>" + "x|" * 5000)[:10_000]
    start = time.perf_counter()
    p = parse_answer(structured)
    assert time.perf_counter() - start < 0.05
    assert p.status == "partial" and p.advertisers == ["x"] and p.n_duplicates == p.n_advertisers_raw - 1


def test_random_unicode_200_cases() -> None:
    rng = random.Random(20240601)
    tags = [f"<{end}{tag}>" for tag in TAGS for end in ("", "/")]  # <answer>, </answer>, ...
    pieces = [*tags, "|", "[", "]", "&", "\n"]
    for _ in range(200):
        n = rng.randrange(0, 400)
        chars = [
            rng.choice(pieces) if rng.random() < 0.1 else chr(rng.randrange(0, 0x110000)) for _ in range(n)
        ]
        text = "".join(chars)
        p = parse_answer(text)
        assert p.status in ("ok", "partial", "unparseable")
        assert len(p.advertisers) <= 20 and len(p.interests) <= 5
        s = parse_single(text)
        assert s.status in ("ok", "partial", "unparseable")


def test_parse_single() -> None:
    assert parse_single("Sephora").advertisers == ["Sephora"]
    assert parse_single('\n\n  Advertiser: "Nike".\nBecause the user runs.').advertisers == ["Nike"]
    assert parse_single("1. **H&amp;M**").advertisers == ["H&M"]
    assert parse_single("<think>hmm</think>\nPredicted advertiser - Johnson & Johnson").advertisers == [
        "Johnson & Johnson"
    ]
    assert parse_single("   \n").status == "unparseable"
    p = parse_single(A5)
    assert p.advertisers == ["Advertiser 1"] and p.status == "partial"
    assert parse_single("x" * 300).status == "partial"


def test_batch_and_summary() -> None:
    parsed = parse_batch([A3, A5, "garbage", A3[:200], A3.replace("Advertiser 2|", "Advertiser 1|")])
    assert [p.status for p in parsed] == ["ok", "ok", "unparseable", "partial", "ok"]
    s = summarize(parsed)
    assert s["n"] == 5 and s["ok"] == 3 and s["partial"] == 1 and s["unparseable"] == 1
    assert s["n_duplicates"] == 1 and s["rows_with_duplicates"] == 1
    assert s["exact_count_rate"] == pytest.approx(2 / 5)
    assert s["mean_advertisers"] == pytest.approx((20 + 20 + 0 + len(parsed[3].advertisers) + 19) / 5)
    assert parse_batch(["Nike"], single=True)[0].advertisers == ["Nike"]
    assert summarize([])["n"] == 0
