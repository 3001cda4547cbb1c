"""The evaluation report as Markdown (``<out>/eval.md``): one table of methods x Recall@K per set, with
format columns for LLM rows, the complementarity pairs and the run's command and configuration."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def reranker_note(name: str, m: Mapping[str, Any]) -> str | None:
    """One line on a reranker row's validation choice (None when it made none): which ranking it uses and
    the R@K of every choice on the held-out train users."""
    v = m.get("validation") or {}
    if not v.get("recall"):
        return None
    scores = ", ".join(f"{k} {r:.3f}" for k, r in sorted(v["recall"].items(), key=lambda kv: -kv[1]))
    how = "its learned ranking" if v["choice"] == "gbdt" else f"the input signal '{v['choice']}'"
    return (
        f"'{name}' ranks by {how}: R@{v['k']} on {v['rows']} held-out train rows, of users it was not "
        f"fitted on: {scores}."
    )


def eval_markdown(result: Mapping[str, Any]) -> str:
    """The report as a Markdown table: methods x (R@K per set), plus format columns for LLM rows."""
    sets = list(result["n_rows"])
    ks = result["ks"]
    lines = [
        "# Advertiser prediction: offline evaluation",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Anchor dates: {', '.join(result['anchor_dates'])}; labelled rows scored: "
        + ", ".join(f"{s} = {n}" for s, n in result["n_rows"].items())
        + f"; train rows: {result['n_train_rows']} ({result['n_train_labelled']} labelled).",
        "",
    ]
    head = [
        "method",
        *(f"{s} R@{k}" for s in sets for k in ks),
        "valid fmt",
        "partial",
        "unparseable",
        "halluc.",
        "uniq. adv",
        "cand. ceiling",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = sets[0] if sets else None
    for name, m in result["methods"].items():
        cells = [name]
        for s in sets:
            cells += [_fmt(m["recall"][s][f"R@{k}"]) for k in ks]
        f = (m.get("format") or {}).get(first) or {}
        cells += [
            _fmt(f.get("valid_format_rate"), True),
            _fmt(f.get("partial_rate"), True),
            _fmt(f.get("unparseable_rate"), True),
            _fmt(f.get("hallucination_rate"), True),
            f"{f['mean_unique_advertisers']:.1f}" if f.get("mean_unique_advertisers") is not None else "–",
            _fmt((m.get("ceiling") or {}).get(first), True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Format, hallucination and ceiling columns are on {first}. Hallucination = parsed names that "
        "resolve to no advertiser / all parsed names; candidate ceiling = share of labels inside the "
        "reranker's candidate set (gbdt rows) or among the advertisers the prompt offers, the user's active "
        "advertisers plus the preset pool (llm rows: the most a catalogue-constrained model can reach).",
        "",
    ]
    for name, m in result["methods"].items():
        note = reranker_note(name, m)
        if note:
            lines += [note, ""]
    if result.get("combinations"):
        lines += [
            "Complementarity (same fitting rows for both): "
            + "; ".join(
                f"'{c['gbdt + llm']}' vs '{c['gbdt']}' ({c['mode']}, {c['n_fit_rows']} rows)"
                for c in result["combinations"]
            ),
            "",
        ]
    lines += [
        "<details><summary>Configuration</summary>",
        "",
        "```json",
        json.dumps(result["config"], indent=2),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)
