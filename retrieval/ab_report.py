"""The report of a simulated A/B test (:func:`retrieval.abtest.run_ab`): ``report.md`` and ``ab.png``.

The markdown holds the paper's Table 6 analogue per run (objective x LLM quota): drawn outcomes,
expected outcomes and the paired counterfactual, for all users and for users with weak on-site
signal; the figure plots the paired, expected relative change per metric against the LLM quota.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrieval.abtest import METRICS
from retrieval.config import RetrievalConfig, config_to_dict


def write_report(result: dict[str, Any], cfg: RetrievalConfig, command: str, out: Path) -> Path:
    """``report.md`` (Table 6 analogue and sweeps) and ``ab.png`` for a :func:`run_ab` result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = {
        "roas": "RoAS",
        "conversions_per_user": "conversions / user",
        "ctr": "CTR",
        "advertisers_per_user": "advertisers among the blended candidates / user",
    }

    def cell(c: dict[str, float]) -> str:
        return f"{c['rel_change']:+.1%} [{c['ci_low']:+.1%}, {c['ci_high']:+.1%}], p={c['p_value']:.3f}"

    lines = [
        "# Simulated online A/B test of the LLM candidate generator (paper Table 6 analogue)",
        "",
        f"Command: `{command}`",
        "",
        "Config: `" + json.dumps(config_to_dict(cfg), default=str) + "`",
        "",
        f"A/B days {result['days'][0]} .. {result['days'][-1]}, {result['n_users']} users with a prediction; "
        "relative change treatment vs control, user-bootstrap 95 % interval, permutation p-value.",
        "",
    ]
    for r in result["runs"]:
        lines += [
            f"## objective `{r['objective']}`, LLM quota {r['llm_quota']}" + (" (A/A)" if r["aa"] else ""),
            "",
            f"Users: control {r['users']['control']}, treatment {r['users']['treatment']} "
            f"(weak on-site signal: {r['users']['weak']}); LLM-sourced share of treatment impressions "
            f"{r['llm_impression_share']:.1%}.",
            "",
            "Drawn outcomes (one Bernoulli draw per impression):",
            "",
            "| metric | control | treatment | all users: change | weak on-site users: change |",
            "|---|---|---|---|---|",
        ]
        for key, wkey, title in (
            ("overall", "weak", None),
            (
                "overall_expected",
                "weak_expected",
                "Expected outcomes (the draws' probabilities; no draw noise):",
            ),
            (
                "paired_expected",
                "paired_weak_expected",
                "Counterfactual, paired: every user under both policies, expected outcomes "
                "(no between-user noise; only a simulation can do this):",
            ),
        ):
            if title:
                lines += [
                    "",
                    title,
                    "",
                    "| metric | control | treatment | all users: change | weak on-site users: change |",
                    "|---|---|---|---|---|",
                ]
            for m in METRICS:
                c = r[key][m]
                w = r[wkey][m] if r[wkey] else None
                lines.append(
                    f"| {names[m]} | {c['control']:.4g} | {c['treatment']:.4g} | {cell(c)} | "
                    f"{cell(w) if w else 'n/a'} |"
                )
        lines.append("")
    lines += ["![A/B sweeps](ab.png)", ""]
    (out / "report.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.5))
    for ax, m in zip(axes, METRICS, strict=True):
        for obj in dict.fromkeys(r["objective"] for r in result["runs"]):
            rs = [r for r in result["runs"] if r["objective"] == obj]
            x = [r["llm_quota"] for r in rs]
            e = [r["paired_expected"][m] for r in rs]
            y = [100 * c["rel_change"] for c in e]
            lo = [100 * (c["rel_change"] - c["ci_low"]) for c in e]
            hi = [100 * (c["ci_high"] - c["rel_change"]) for c in e]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=obj)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{names[m]} (paired, expected)", fontsize=9)
        ax.set_xlabel("LLM generator quota")
        ax.set_ylabel("change vs control, %")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ab.png", dpi=110)
    plt.close(fig)
    return out / "report.md"
