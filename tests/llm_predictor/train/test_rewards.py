"""paper_reward against hand-computed values of paper eq. 1-5 (1-based positions unless stated)."""

from __future__ import annotations

import pytest

from llm_predictor.train.rewards import (
    RewardConfig,
    length_penalty,
    make_reward,
    match_reward,
    paper_reward,
    score_completion,
)

LABEL = "Nike"


def names(n: int, label_at: int | None = None, label: str = LABEL) -> list[str]:
    """n distinct filler advertisers with ``label`` at 1-based position ``label_at``."""
    out = [f"Brand {k}" for k in range(1, n + 1)]
    if label_at is not None:
        out[label_at - 1] = label
    return out


def answer(advertisers: list[str], interests: list[str] | None = None) -> str:
    interests = ["running", "skincare", "home", "camping", "coffee"] if interests is None else interests
    return (
        "<answer>\n"
        f"<interests>\n[{'|'.join(interests)}]\n</interests>\n"
        f"<advertiser_names>\n[{'|'.join(advertisers)}]\n</advertiser_names>\n"
        "</answer>"
    )


def reward(text, label=LABEL) -> float:
    return paper_reward([text], [label])[0]


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (1, 0.1 * 19 + 2.0),  # 3.9
        (4, 0.1 * 16 + 2.0),  # 3.6: last position with the bonus
        (5, 0.1 * 15),  # 1.5: no bonus
        (20, 0.0),  # 0.1 * (20 - 20)
        (None, 0.0),  # absent
    ],
)
def test_label_position(position: int | None, expected: float) -> None:
    assert reward(answer(names(20, position))) == pytest.approx(expected)


def test_values_spelled_out() -> None:
    assert reward(answer(names(20, 1))) == pytest.approx(3.9)
    assert reward(answer(names(20, 4))) == pytest.approx(3.6)
    assert reward(answer(names(20, 5))) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("n_adv", "label_at", "expected"),
    [
        (19, 1, 3.9 - (0.1 * 1 + 1.0)),  # 2.8
        (19, None, -1.1),
        (25, 1, 3.9 - (0.1 * 5 + 1.0)),  # 2.4
        (25, 22, 0.0 - 1.5),  # beyond the 20-name list: absent, not 0.1 * (20 - 22)
        (35, 3, 0.1 * 17 + 2.0 - 2.0),  # penalty capped: min(1.5, 1.0) + 1.0
        (0, None, -2.0 - 1.5),  # empty list: unparseable
    ],
)
def test_advertiser_count_penalty(n_adv: int, label_at: int | None, expected: float) -> None:
    assert reward(answer(names(n_adv, label_at))) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("n_interest", "expected"),
    [
        (0, 3.9 - (0.1 * 5 + 1.0)),  # 2.4
        (5, 3.9),
        (7, 3.9 - (0.1 * 2 + 1.0)),  # 2.7
    ],
)
def test_interest_count_penalty(n_interest: int, expected: float) -> None:
    interests = [f"interest {k}" for k in range(n_interest)]
    assert reward(answer(names(20, 1), interests)) == pytest.approx(expected)


def test_missing_interests_element_counts_zero() -> None:
    text = "<answer>\n<advertiser_names>\n[" + "|".join(names(20, 2)) + "]\n</advertiser_names>\n</answer>"
    assert reward(text) == pytest.approx(0.1 * 18 + 2.0 - 1.5)


@pytest.mark.parametrize("text", ["I think the user likes shoes.", "", "<answer></answer>", None])
def test_unparseable(text) -> None:
    parts = score_completion(text, LABEL)
    assert parts.status == "unparseable"
    assert (parts.r_match, parts.n_adv, parts.n_interest) == (0.0, 0, 0)
    assert parts.total == pytest.approx(-2.0 - 1.5)  # -P_len(0, 20) - P_len(0, 5) = -3.5


def test_unparseable_even_with_interests() -> None:
    text = "<answer><interests>[a|b|c|d|e]</interests></answer>"
    assert reward(text) == pytest.approx(-3.5)


def test_chat_format_completions() -> None:
    texts = [answer(names(20, 1)), answer(names(20, 5)), "nothing"]
    chats = [[{"role": "assistant", "content": t}] for t in texts]
    labels = [LABEL] * 3
    assert paper_reward(chats, labels) == pytest.approx(paper_reward(texts, labels))
    assert paper_reward(chats, labels) == pytest.approx([3.9, 1.5, -3.5])
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": texts[0]}]}]]
    assert paper_reward(parts, [LABEL]) == pytest.approx([3.9])


def test_position_base_zero() -> None:
    f = make_reward(RewardConfig(position_base=0))
    assert f.__name__ == "paper_reward_custom"
    got = f([answer(names(20, p)) for p in (1, 5, 6, 20)] + [answer(names(20))], [LABEL] * 5)
    # i = position - 1: 0.1 * (20 - i) + (2.0 if i <= 4)
    assert got == pytest.approx([2.0 + 2.0, 1.6 + 2.0, 1.5, 0.1, 0.0])


def test_name_normalisation_and_duplicates() -> None:
    assert reward(answer(names(20, 1, label="nike"))) == pytest.approx(3.9)
    assert reward(answer(names(20, 2, label="NIKE, Inc.")), label="Nike") == pytest.approx(3.8)
    strict = make_reward(RewardConfig(normalize=False), name="strict")
    assert strict.__name__ == "strict"
    assert strict([answer(names(20, 1, label="nike"))], ["Nike"]) == pytest.approx([3.9])  # case-insensitive
    assert strict([answer(names(20, 1, label="Nike Inc"))], ["Nike"]) == pytest.approx([0.0])
    # 20 items listed (no count penalty), a case-variant duplicate before the label: the label is the 2nd
    # distinct name -> i = 2.
    dup = ["Adidas", "adidas", LABEL, *[f"Brand {k}" for k in range(17)]]
    parts = score_completion(answer(dup), LABEL)
    assert (parts.n_adv, parts.rank) == (20, 2)
    assert parts.total == pytest.approx(0.1 * 18 + 2.0)
    # the label listed twice: first occurrence counts
    assert score_completion(answer([*names(19, 3), LABEL]), LABEL).rank == 3


def test_missing_label_and_alignment() -> None:
    assert paper_reward([answer(names(20, 1))], [None]) == pytest.approx([0.0])
    assert paper_reward([answer(names(20, 1))] * 2, LABEL) == pytest.approx([3.9, 3.9])
    with pytest.raises(ValueError):
        paper_reward([answer(names(20, 1))] * 2, [LABEL])


def test_trl_call_signature_and_metrics() -> None:
    logged: dict[str, float] = {}
    got = paper_reward(
        prompts=[[{"role": "user", "content": "p"}]] * 2,
        completions=[
            [{"role": "assistant", "content": answer(names(20, 1))}],
            [{"role": "assistant", "content": "x"}],
        ],
        completion_ids=[[1, 2], [3]],
        label_advertiser_name=[LABEL, LABEL],
        user_id=[1, 1],
        trainer_state=None,
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    assert got == pytest.approx([3.9, -3.5])
    assert logged["reward_parts/hit_rate"] == pytest.approx(0.5)
    assert logged["reward_parts/unparseable_rate"] == pytest.approx(0.5)
    assert paper_reward.__name__ == "paper_reward" and make_reward() is paper_reward


def test_building_blocks() -> None:
    assert length_penalty(20, 20) == 0.0
    assert length_penalty(21, 20) == pytest.approx(1.1)
    assert length_penalty(50, 20) == pytest.approx(2.0)
    assert match_reward(None) == 0.0
    assert match_reward(21) == 0.0
    assert match_reward(21, RewardConfig(max_rank=None)) == pytest.approx(-0.1)  # eq. 3 taken literally
    with pytest.raises(ValueError):
        RewardConfig(position_base=2)
