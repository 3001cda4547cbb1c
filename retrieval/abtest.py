"""Simulated online A/B test of the LLM candidate generator (paper 4.5, Table 6), with a heuristic control arm.

Users with a prediction in the store are split by a salted hash of their id into three arms (issue 18):
``control`` (the two-tower and popularity channels), ``heuristic`` (the same plus the advertiser-filtered
two-tower generator restricted to the heuristic control's advertisers) and ``llm`` (the same generator
restricted to the LLM's advertisers), the two filtered generators at the same quota and read alike from
Feast online features (``heuristic_predictions_online`` / ``llm_predictions_online``). The blend
(:func:`retrieval.blend.blend`, the filtered channel last, so a filtered arm's blend extends control's)
is scored by the trained ranking models through Feast online features (expected conversions per
impression = P(ctcvr) + P(vtcvr)), and the top ``slots`` ads (at most ``per_advertiser_cap`` per
advertiser) are shown each A/B day. Outcomes come from the world's ground truth
(:mod:`retrieval.outcomes`) with common random numbers per (user, day, slot). Metrics per pair of arms
(:data:`PAIRS`: heuristic vs control, LLM vs control, and LLM vs heuristic, the LLM's own value), with
relative change, user-bootstrap 95 % interval and permutation p-value (:mod:`retrieval.stats`): RoAS,
conversions per user, CTR and distinct advertisers among a user's de-duplicated blended candidates;
overall and for users with weak on-site signal; split-sample and paired (every user simulated under
every arm's policy).

The serving stack of every arm is :class:`retrieval.serving.Serving`; the report of a run
(``report.md``, ``ab.png``) is written by :func:`retrieval.ab_report.write_report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from adprior import store
from adprior.progress import Progress
from retrieval.blend import Candidate, advertiser_diversity, blend
from retrieval.config import OBJECTIVES, RetrievalConfig
from retrieval.outcomes import Truth, draw, window
from retrieval.serving import Serving
from retrieval.stats import Comparison, compare_groups, compare_paired

log = logging.getLogger(__name__)

METRICS = ("roas", "conversions_per_user", "ctr", "advertisers_per_user")
ARMS = ("control", "heuristic", "llm")  # arm = the filtered generator it adds (none, heuristic, LLM)
FILTERED = ("heuristic", "llm")  # the advertiser-filtered generators (retrieval.serving channels)
# Paired comparisons of a run: name -> (reference arm, arm).
PAIRS = {
    "heuristic_vs_control": ("control", "heuristic"),
    "llm_vs_control": ("control", "llm"),
    "llm_vs_heuristic": ("heuristic", "llm"),
}


def arm_of(user_id: int, salt: str, arms: Sequence[str] = ARMS) -> str:
    """The user's arm: a salted blake2b hash of the user id modulo the number of arms (two arms: its parity)."""
    h = hashlib.blake2b(f"{salt}:{int(user_id)}".encode(), digest_size=8).digest()
    return arms[int.from_bytes(h, "big") % len(arms)]


def slate(cands: list[Candidate], scores: dict[int, float], slots: int, cap: int) -> list[Candidate]:
    """The shown ads: candidates by ranking score (ties: blend order), at most ``cap`` per advertiser."""
    order = sorted(range(len(cands)), key=lambda i: (-scores.get(cands[i].advertiser_id, 0.0), i))
    shown: list[Candidate] = []
    per: dict[int, int] = {}
    for i in order:
        c = cands[i]
        if per.get(c.advertiser_id, 0) >= cap:
            continue
        per[c.advertiser_id] = per.get(c.advertiser_id, 0) + 1
        shown.append(c)
        if len(shown) == slots:
            break
    return shown


def simulate_outcomes(
    slates: dict[int, list[Candidate]],
    arms: dict[int, str],
    truth: Truth,
    days: list[date],
    prices: dict[int, float],
    cfg: RetrievalConfig,
    blends: dict[int, list[Candidate]] | None = None,
) -> pd.DataFrame:
    """Per-user sums over the A/B days: impressions, clicks, conversions, value, cost, advertisers.

    Args:
        slates: user -> the ads shown each day (the user's features do not change inside the window).
        arms: user -> arm name.
        truth: the world's ground truth.
        days: the A/B days.
        prices: item id -> price (conversion value).
        cfg: ad_effect, cost_per_impression, ab_seed.
        blends: user -> the de-duplicated blended candidates (L0); ``advertisers`` counts the distinct
            advertisers there (None: in the slate).
    """
    rows = []
    for u, shown in slates.items():
        imp = clicks = conv = 0
        value = cost = e_clicks = e_conv = e_value = 0.0
        llm_imp = heur_imp = 0
        for d in days:
            for s, c in enumerate(shown):
                o = draw(
                    truth,
                    u,
                    d,
                    s,
                    c.advertiser_id,
                    prices.get(c.item_id, 0.0),
                    cfg.ad_effect,
                    cfg.cost_per_impression,
                    cfg.ab_seed,
                )
                imp += 1
                clicks += o.clicked
                conv += o.converted
                value += o.value
                cost += o.cost
                e_clicks += o.p_click
                e_conv += o.p_conversion
                e_value += o.p_conversion * prices.get(c.item_id, 0.0)
                llm_imp += c.source == "llm"
                heur_imp += c.source == "heuristic"
        rows.append(
            {
                "user_id": u,
                "arm": arms[u],
                "weak_onsite": truth.weak.get(u, False),
                "impressions": imp,
                "clicks": clicks,
                "conversions": conv,
                "value": value,
                "cost": cost,
                "advertisers": advertiser_diversity(shown if blends is None else blends[u])[
                    "distinct_advertisers"
                ],
                "llm_impressions": llm_imp,
                "heuristic_impressions": heur_imp,
                "exp_clicks": e_clicks,
                "exp_conversions": e_conv,
                "exp_value": e_value,
            }
        )
    return pd.DataFrame(rows)


def _metric_columns(expected: bool) -> dict[str, tuple[str, str | None]]:
    """Metric -> (numerator column, denominator column or None = one per user) of simulate_outcomes."""
    e = "exp_" if expected else ""
    return {
        "roas": (f"{e}value", "cost"),
        "conversions_per_user": (f"{e}conversions", None),
        "ctr": (f"{e}clicks", "impressions"),
        "advertisers_per_user": ("advertisers", None),
    }


def compare_arms(
    per_user: pd.DataFrame,
    resamples: int,
    seed: int,
    expected: bool = False,
    arms: tuple[str, str] = ("control", "treatment"),
) -> dict[str, Comparison]:
    """The four metrics, the second arm versus the first (ratios of per-user sums).

    Args:
        per_user: :func:`simulate_outcomes` output.
        resamples: bootstrap / permutation resamples.
        seed: their seed.
        expected: use each impression's expected click / conversion / value (the probabilities the
            draws used) instead of the drawn outcomes: the same comparison without the draw noise.
        arms: (reference arm, compared arm) names in ``per_user['arm']``.
    """
    c = per_user[per_user["arm"] == arms[0]]
    t = per_user[per_user["arm"] == arms[1]]
    one_c, one_t = np.ones(len(c)), np.ones(len(t))
    out = {}
    for name, (num, den) in _metric_columns(expected).items():
        out[name] = compare_groups(
            c[num].to_numpy(),
            one_c if den is None else c[den].to_numpy(),
            t[num].to_numpy(),
            one_t if den is None else t[den].to_numpy(),
            resamples=resamples,
            seed=seed,
        )
    return out


def compare_policies(
    control: pd.DataFrame, treatment: pd.DataFrame, resamples: int, seed: int, expected: bool = True
) -> dict[str, Comparison]:
    """Counterfactual, paired: every user simulated under both policies (same rows, same order)."""
    if not control["user_id"].equals(treatment["user_id"]):
        raise ValueError("paired comparison needs the same users in the same order under both policies")
    spec = _metric_columns(expected)
    one = np.ones(len(control))
    return {
        name: compare_paired(
            control[num].to_numpy(),
            one if den is None else control[den].to_numpy(),
            treatment[num].to_numpy(),
            one if den is None else treatment[den].to_numpy(),
            resamples=resamples,
            seed=seed,
        )
        for name, (num, den) in spec.items()
    }


def _latest_prediction_day(cfg: RetrievalConfig) -> date:
    path = store.offline_dir(cfg.store, "llm_predictions")
    if not path.exists() or not any(path.glob("*.parquet")):
        raise ValueError(f"no LLM predictions under {path}: run the nightly job first")
    col = pads.dataset(path, format="parquet").to_table(columns=["event_timestamp"]).column(0)
    return pd.Timestamp(max(col.to_pylist())).tz_convert(UTC).date()


def _readings(
    per_user: pd.DataFrame, cf: dict[str, pd.DataFrame], ref: str, arm: str, cfg: RetrievalConfig
) -> dict[str, Any]:
    """The six readings of arm versus ref: split-sample drawn / expected (all users, weak on-site users;
    None when an arm has no user) and the paired counterfactual (every user under both policies)."""

    def split(frame: pd.DataFrame, expected: bool) -> dict[str, Any] | None:
        if not ({ref, arm} <= set(frame["arm"])):
            return None
        res = compare_arms(frame, cfg.ab_resamples, cfg.ab_seed, expected=expected, arms=(ref, arm))
        return {k: asdict(v) for k, v in res.items()}

    def paired(mask: np.ndarray) -> dict[str, Any]:
        a, b = (cf[x][mask].reset_index(drop=True) for x in (ref, arm))
        return {k: asdict(v) for k, v in compare_policies(a, b, cfg.ab_resamples, cfg.ab_seed).items()}

    weak = per_user[per_user["weak_onsite"]]
    weak_mask = cf[ref]["weak_onsite"].to_numpy()
    return {
        "overall": split(per_user, False),
        "weak": split(weak, False),
        "overall_expected": split(per_user, True),
        "weak_expected": split(weak, True),
        "paired_expected": paired(np.ones(len(weak_mask), dtype=bool)),
        "paired_weak_expected": paired(weak_mask),
    }


def run_ab(
    cfg: RetrievalConfig,
    objectives: tuple[str, ...] = ("impression",),
    llm_quotas: tuple[int, ...] | None = None,
    aa: bool = False,
) -> dict[str, Any]:
    """The three-arm A/B test and its sweeps (filtered-generator quota x two-tower objective); writes
    ``<out>/ab/`` (``<out>/aa/`` for an A/A).

    Args:
        cfg: the retrieval configuration (models under ``cfg.out``, store, quotas, A/B settings).
        objectives: two-tower training objectives to serve with (a model per objective must exist).
        llm_quotas: quotas of the filtered generators (the heuristic's and the LLM's alike) to sweep;
            None: ``cfg.quotas['llm']`` only.
        aa: serve every arm exactly like control (an A/A test: any "effect" is noise).

    Returns:
        ``{"days", "n_users", "runs": [{objective, llm_quota, aa, users, impression_share: {arm: share of
        its impressions from its filtered generator}, llm_impression_share, pairs: {name of PAIRS: {reading:
        {metric: Comparison}}}}], "seconds"}``, also written to ``ab.json``.
    """
    t0 = time.perf_counter()
    for o in objectives:
        if o not in OBJECTIVES:
            raise ValueError(f"objective {o!r}: expected one of {OBJECTIVES}")
    quotas = llm_quotas or (cfg.quotas.get("llm", 0),)
    truth = Truth.load(cfg.data)
    start = cfg.ab_start or _latest_prediction_day(cfg)
    days = window(truth, start, cfg.ab_days)
    now = datetime(start.year, start.month, start.day, tzinfo=UTC)
    pred_path = store.offline_dir(cfg.store, "llm_predictions")
    users = sorted(
        {
            int(u)
            for u in pads.dataset(pred_path, format="parquet")
            .to_table(columns=["user_id"])
            .column(0)
            .to_pylist()
        }
    )
    arms = {u: arm_of(u, cfg.ab_salt) for u in users}
    log.info(
        "A/B %s..%s: %d users (%s)",
        days[0],
        days[-1],
        len(users),
        ", ".join(f"{a} {sum(x == a for x in arms.values())}" for a in ARMS),
    )
    runs = []
    for objective in objectives:
        serving = Serving(cfg, objective, now)
        cands = serving.candidates(users)
        if not aa and not any(cands[u]["heuristic"] for u in users):
            log.warning(
                "no user has a heuristic-control list online: the heuristic arm is served like control"
            )
        base_q = {k: v for k, v in cfg.quotas.items() if k not in FILTERED}
        score_cache: dict[int, dict[int, float]] = {}
        with Progress(len(users), f"ab-test {objective}: ranking candidates", "users", logger=log) as bar:
            for u in users:
                allc = [c for lst in cands[u].values() for c in lst]
                score_cache[u] = serving.scores(u, [c.advertiser_id for c in allc])
                bar.update()
        for q in quotas:
            arm_quotas = {a: {**base_q, **({a: 0 if aa else q} if a in FILTERED else {})} for a in ARMS}
            policy: dict[str, dict[int, list[Candidate]]] = {a: {} for a in ARMS}
            blends: dict[str, dict[int, list[Candidate]]] = {a: {} for a in ARMS}
            for u in users:
                for arm in ARMS:
                    blends[arm][u] = blend(cands[u], arm_quotas[arm])
                    policy[arm][u] = slate(blends[arm][u], score_cache[u], cfg.slots, cfg.per_advertiser_cap)
            per_user = simulate_outcomes(
                {u: policy[arms[u]][u] for u in users},
                arms,
                truth,
                days,
                serving.prices,
                cfg,
                {u: blends[arms[u]][u] for u in users},
            )
            # Counterfactual (only a simulation can): every user under every policy, compared in pairs.
            cf = {
                arm: simulate_outcomes(
                    policy[arm], dict.fromkeys(users, arm), truth, days, serving.prices, cfg, blends[arm]
                )
                for arm in ARMS
            }
            share = {}
            for arm in FILTERED:
                mine = per_user[per_user["arm"] == arm]
                share[arm] = float(mine[f"{arm}_impressions"].sum() / max(1, mine["impressions"].sum()))
            run = {
                "objective": objective,
                "llm_quota": q,
                "aa": aa,
                "users": {
                    **{a: int((per_user["arm"] == a).sum()) for a in ARMS},
                    "weak": int(per_user["weak_onsite"].sum()),
                },
                "impression_share": share,
                "llm_impression_share": share["llm"],
                "pairs": {name: _readings(per_user, cf, ref, arm, cfg) for name, (ref, arm) in PAIRS.items()},
            }
            runs.append(run)
            log.info(
                "A/B objective=%s quota=%d, paired expected conversions/user: %s",
                objective,
                q,
                {
                    name: round(p["paired_expected"]["conversions_per_user"]["rel_change"], 4)
                    for name, p in run["pairs"].items()
                },
            )
    result = {
        "days": [d.isoformat() for d in days],
        "n_users": len(users),
        "arms": list(ARMS),
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(cfg.out) / ("aa" if aa else "ab")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab.json").write_text(json.dumps(result, indent=2, default=str))
    return result
