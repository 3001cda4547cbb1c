"""retrieval.abtest + retrieval.outcomes: arm assignment (three arms: control, heuristic, LLM; or any
tuple), slates, outcome draws from a real simulated world's ground truth, and the A/A property (no effect
found when treatment equals control)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from retrieval.abtest import ARMS, arm_of, compare_arms, simulate_outcomes, slate
from retrieval.blend import Candidate
from retrieval.config import RetrievalConfig
from retrieval.outcomes import Truth, draw, window
from world.config import WorldConfig
from world.simulate import simulate


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> Truth:
    root = tmp_path_factory.mktemp("ab") / "world"
    simulate(WorldConfig(out=root, users=400, advertisers=60, days=30, end_date=date(2026, 6, 30), seed=4))
    return Truth.load(root)


TWO = ("control", "treatment")


def test_arm_assignment_is_stable_and_balanced():
    arms = [arm_of(u, "s") for u in range(6000)]
    assert arms == [arm_of(u, "s") for u in range(6000)]
    assert set(arms) == set(ARMS) == {"control", "heuristic", "llm"}
    for a in ARMS:
        assert 0.30 < np.mean([x == a for x in arms]) < 0.37
    assert arms != [arm_of(u, "other salt") for u in range(6000)]
    two = [arm_of(u, "s", TWO) for u in range(4000)]
    assert 0.45 < np.mean([a == "treatment" for a in two]) < 0.55


def test_slate_orders_by_score_and_caps_advertisers():
    cands = [
        Candidate(1, 10, 0.9, "two_tower"),
        Candidate(2, 10, 0.8, "two_tower"),
        Candidate(3, 20, 0.7, "popularity"),
        Candidate(4, 30, 0.1, "llm"),
    ]
    shown = slate(cands, {10: 0.1, 20: 0.3, 30: 0.5}, slots=3, cap=1)
    assert [c.item_id for c in shown] == [4, 3, 1]
    assert [c.item_id for c in slate(cands, {}, slots=2, cap=2)] == [1, 2]  # no ranker: blend order


def test_outcomes_follow_the_truth(truth):
    day = truth.days[-1]
    users = [u for (u, d) in truth.propensity if d == day][:50]
    best = {u: max(truth.propensity[(u, day)], key=truth.propensity[(u, day)].get) for u in users}
    conv_top = sum(
        draw(truth, u, day, s, best[u], 10.0, 1.0, 0.01, seed=0).converted for u in users for s in range(40)
    )
    conv_none = sum(
        draw(truth, u, day, s, -1, 10.0, 1.0, 0.01, seed=0).converted for u in users for s in range(40)
    )
    assert conv_none == 0 and conv_top > 0  # unknown advertiser: propensity 0
    o1 = draw(truth, users[0], day, 0, best[users[0]], 10.0, 1.0, 0.01, seed=3)
    assert o1 == draw(
        truth, users[0], day, 0, best[users[0]], 10.0, 1.0, 0.01, seed=3
    )  # common random numbers
    assert o1.value in (0.0, 10.0) and o1.cost == 0.01
    with pytest.raises(ValueError, match="outside the truth"):
        window(truth, date(2027, 1, 1), 7)


def test_aa_finds_no_effect_in_most_seeds(truth):
    days = window(truth, truth.days[-7], 7)
    users = sorted({u for (u, _) in truth.propensity})
    pop = pd.Series({a: p for (u, d), m in truth.propensity.items() for a, p in m.items()}).sort_values()
    top = [int(a) for a in pop.index[-5:]]
    slates = {u: [Candidate(1000 + i, a, 0.0, "two_tower") for i, a in enumerate(top)] for u in users}
    prices = {1000 + i: 20.0 for i in range(5)}
    p_values, effects = [], []
    for seed in range(12):
        cfg = RetrievalConfig(ab_seed=seed, ad_effect=1.0)
        arms = {u: arm_of(u, f"aa-{seed}", TWO) for u in users}
        per_user = simulate_outcomes(slates, arms, truth, days, prices, cfg)
        res = compare_arms(per_user, resamples=300, seed=seed)
        p_values.append(res["conversions_per_user"].p_value)
        p_values.append(compare_arms(per_user, resamples=300, seed=seed, expected=True)["roas"].p_value)
        effects.append(res["advertisers_per_user"].rel_change)
    assert np.mean(np.array(p_values) > 0.05) >= 0.75
    assert all(e == 0 for e in effects)  # identical slates: identical diversity


def test_a_real_effect_is_detected(truth):
    days = window(truth, truth.days[-7], 7)
    users = sorted({u for (u, _) in truth.propensity})
    arms = {u: arm_of(u, "effect", TWO) for u in users}
    slates = {}
    for u in users:
        m = truth.propensity.get((u, days[0]), {})
        good = sorted(m, key=m.get, reverse=True)[:5]
        # treatment is shown each user's most likely advertisers, control unknown ones (no conversions)
        advs = good if arms[u] == "treatment" else [-1] * 5
        slates[u] = [Candidate(i, a, 0.0, "llm") for i, a in enumerate(advs)]
    per_user = simulate_outcomes(
        slates, arms, truth, days, {i: 10.0 for i in range(5)}, RetrievalConfig(ad_effect=1.0)
    )
    assert per_user.loc[per_user.arm == "control", "conversions"].sum() == 0
    res = compare_arms(per_user, resamples=300, seed=0)
    assert res["roas"].treatment > 0 and res["roas"].p_value < 0.01


def test_three_arms_are_compared_in_pairs(truth):
    days = window(truth, truth.days[-7], 7)
    users = sorted({u for (u, _) in truth.propensity})
    arms = {u: arm_of(u, "three") for u in users}
    slates = {}
    for u in users:
        m = truth.propensity.get((u, days[0]), {})
        ranked = sorted(m, key=m.get, reverse=True)
        # control: unknown advertisers; heuristic: the user's 6th-10th most likely; llm: the top 5
        advs = {"control": [-1] * 5, "heuristic": ranked[5:10], "llm": ranked[:5]}[arms[u]]
        slates[u] = [Candidate(i, a, 0.0, arms[u]) for i, a in enumerate(advs)]
    per_user = simulate_outcomes(
        slates, arms, truth, days, {i: 10.0 for i in range(5)}, RetrievalConfig(ad_effect=1.0)
    )
    assert (per_user.loc[per_user.arm == "heuristic", "heuristic_impressions"] > 0).all()
    assert per_user.loc[per_user.arm != "llm", "llm_impressions"].sum() == 0
    n = per_user["arm"].value_counts()
    hc = compare_arms(per_user, resamples=200, seed=0, expected=True, arms=("control", "heuristic"))
    lh = compare_arms(per_user, resamples=200, seed=0, expected=True, arms=("heuristic", "llm"))
    c = hc["conversions_per_user"]
    assert (
        c.control == 0 and c.treatment > 0 and (c.n_control, c.n_treatment) == (n["control"], n["heuristic"])
    )
    c = lh["conversions_per_user"]
    assert c.rel_change > 0 and c.ci_low <= c.rel_change <= c.ci_high and c.n_treatment == n["llm"]
