"""The report of a simulated A/B test (:func:`retrieval.abtest.run_ab`): ``report.md`` and ``ab.png``.

The markdown holds the paper's Table 6 analogue per run (objective x filtered-generator quota), three arms
(control, heuristic-filtered, LLM-filtered) and their three pairs: drawn outcomes, expected outcomes and
the paired counterfactual, for all users and for users with weak on-site signal; the figure plots the
paired, expected relative change of each pair per metric against the quota.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from retrieval.abtest import METRICS, PAIRS
from retrieval.config import RetrievalConfig, config_to_dict

NAMES = {
    "roas": "RoAS",
    "conversions_per_user": "conversions / user",
    "ctr": "CTR",
    "advertisers_per_user": "advertisers among the blended candidates / user",
}
PAIR_TITLES = {
    "heuristic_vs_control": "heuristic vs control",
    "llm_vs_control": "LLM vs control",
    "llm_vs_heuristic": "LLM vs heuristic",
}
# (all-users reading, weak-users reading, title) of each table of a run.
TABLES = (
    ("overall", "weak", "Drawn outcomes (one Bernoulli draw per impression), split sample:"),
    ("overall_expected", "weak_expected", "Expected outcomes (the draws' probabilities; no draw noise):"),
    (
        "paired_expected",
        "paired_weak_expected",
        "Counterfactual, paired: every user under every arm's policy, expected outcomes "
        "(no between-user noise; only a simulation can do this):",
    ),
)


def cell(c: dict[str, float] | None) -> str:
    """A relative change with its interval and p-value, ``+1.2% [-0.3%, +2.8%], p=0.110``."""
    if c is None:
        return "n/a"
    if not math.isfinite(c["rel_change"]):  # the reference arm's value is 0: no relative change exists
        return f"undefined (reference 0), p={c['p_value']:.3f}"
    return f"{c['rel_change']:+.1%} [{c['ci_low']:+.1%}, {c['ci_high']:+.1%}], p={c['p_value']:.3f}"


def _table(run: dict[str, Any], key: str, wkey: str) -> list[str]:
    """One reading of a run: the arms' metric values and the three pairs' changes, all and weak users."""
    pairs = run["pairs"]
    lines = [
        "| metric | users | control | heuristic | LLM | " + " | ".join(PAIR_TITLES[p] for p in PAIRS) + " |",
        "|---|---|---|---|---|" + "---|" * len(PAIRS),
    ]
    for who, k in (("all", key), ("weak on-site", wkey)):
        for m in METRICS:
            got = {p: (pairs[p][k] or {}).get(m) for p in PAIRS}
            hc, lc = got["heuristic_vs_control"], got["llm_vs_control"]
            values = [
                f"{hc['control']:.4g}" if hc else "–",
                f"{hc['treatment']:.4g}" if hc else "–",
                f"{lc['treatment']:.4g}" if lc else "–",
            ]
            lines.append(
                f"| {NAMES[m]} | {who} | "
                + " | ".join(values)
                + " | "
                + " | ".join(cell(got[p]) for p in PAIRS)
                + " |"
            )
    return lines


def write_report(result: dict[str, Any], cfg: RetrievalConfig, command: str, out: Path) -> Path:
    """``report.md`` (Table 6 analogue and sweeps) and ``ab.png`` for a :func:`run_ab` result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Simulated online A/B test of the LLM candidate generator against a heuristic control "
        "(paper Table 6 analogue)",
        "",
        f"Command: `{command}`",
        "",
        "Config: `" + json.dumps(config_to_dict(cfg), default=str) + "`",
        "",
        f"A/B days {result['days'][0]} .. {result['days'][-1]}, {result['n_users']} users with a prediction, "
        "three arms by a salted hash: control (two-tower + popularity), heuristic (+ the two-tower generator "
        "filtered to the heuristic control's 20 advertisers: history + brands + co-occurrence + popularity) and "
        "LLM (+ the same generator filtered to the LLM's 20), the filtered generators at the same quota. "
        "Relative change of the second arm over the first, user-bootstrap 95 % interval, permutation p-value; "
        "'LLM vs heuristic' is what the LLM adds over the best non-LLM list.",
        "",
    ]
    for r in result["runs"]:
        u, share = r["users"], r["impression_share"]
        lines += [
            f"## objective `{r['objective']}`, filtered-generator quota {r['llm_quota']}"
            + (" (A/A)" if r["aa"] else ""),
            "",
            f"Users: control {u['control']}, heuristic {u['heuristic']}, LLM {u['llm']} (weak on-site signal: "
            f"{u['weak']}); impressions from the arm's filtered generator: heuristic {share['heuristic']:.1%}, "
            f"LLM {share['llm']:.1%}.",
        ]
        for key, wkey, title in TABLES:
            lines += ["", title, "", *_table(r, key, wkey)]
        lines.append("")
    lines += ["![A/B sweeps](ab.png)", ""]
    (out / "report.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.5 * len(METRICS), 3.8))
    styles = {"heuristic_vs_control": ":", "llm_vs_control": "--", "llm_vs_heuristic": "-"}
    for ax, m in zip(axes, METRICS, strict=True):
        for i, obj in enumerate(dict.fromkeys(r["objective"] for r in result["runs"])):
            rs = [r for r in result["runs"] if r["objective"] == obj]
            x = [r["llm_quota"] for r in rs]
            for p, style in styles.items():
                e = [r["pairs"][p]["paired_expected"][m] for r in rs]
                y = [100 * c["rel_change"] for c in e]
                lo = [100 * (c["rel_change"] - c["ci_low"]) for c in e]
                hi = [100 * (c["ci_high"] - c["rel_change"]) for c in e]
                ax.errorbar(
                    x,
                    y,
                    yerr=[lo, hi],
                    marker="o",
                    capsize=3,
                    ls=style,
                    color=f"C{i}",
                    label=f"{obj}: {PAIR_TITLES[p]}",
                )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{NAMES[m]} (paired, expected)", fontsize=9)
        ax.set_xlabel("filtered-generator quota")
        ax.set_ylabel("relative change, %")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "ab.png", dpi=110)
    plt.close(fig)
    return out / "report.md"
