"""The compile summary (``summary.json`` / ``summary.md``): users per set, label coverage, top labels and the
token lengths of inference prompts, computed from a compile output folder."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from adprior.contracts import LIST_FIELDS
from llm_predictor.data.compiled import load_examples, load_preset_pool

_FIXED_TOPS = ("top_categories", "top_brands")  # list columns left out of mean_list_lengths (top-k lists)


def prompt_length_stats(out: Path, x: date, tokenizer: str | None, sample: int) -> dict:
    """Token lengths of inference prompts for ``sample`` examples of anchor date ``x``, counted with
    ``tokenizer`` ('base' = SmolLM2, a model folder, or None)."""
    import numpy as np

    from llm_predictor.base_model import load_tokenizer
    from llm_predictor.data.prompts import PromptBudget, build_prompt_with_stats, hf_token_counter
    from llm_predictor.data.prompts import shared_prefix as make_prefix
    from llm_predictor.data.templates import INFERENCE_TEMPLATE

    tok = load_tokenizer(None if tokenizer == "base" else tokenizer)
    count = hf_token_counter(tok)
    df = load_examples(out, x)
    if len(df) == 0:
        return {"n": 0}
    rows = df.sample(n=min(sample, len(df)), random_state=0)
    pool = load_preset_pool(out, x)
    budget = PromptBudget(count_tokens=count)
    prefix = make_prefix(INFERENCE_TEMPLATE, pool)
    lens, cut = [], 0
    for r in rows.to_dict("records"):
        _, st = build_prompt_with_stats(INFERENCE_TEMPLATE, r, pool, budget)
        lens.append(st["suffix_tokens"])
        cut += any(v.get("dropped_budget", 0) for v in st.values() if isinstance(v, dict))
    a = np.asarray(lens)
    return {
        "tokenizer": getattr(tok, "name_or_path", str(tokenizer)).split("/")[-1],
        "n": len(a),
        "prefix": count(prefix),
        "p50": int(np.percentile(a, 50)),
        "p90": int(np.percentile(a, 90)),
        "p99": int(np.percentile(a, 99)),
        "max": int(a.max()),
        "budget": budget.max_user_tokens,
        "share_cut_by_budget": round(cut / len(a), 4),
    }


def summarize(out: Path, config: Mapping[str, Any]) -> dict:
    """Users per set, label coverage, top labels (and prompt lengths, added by the caller)."""
    df = load_examples(out)
    res: dict = {
        "config": {
            k: (str(v) if not isinstance(v, int | float | bool) else v)
            for k, v in config.items()
            if k != "spark"
        },
        "dates": {},
    }
    for x, g in df.groupby("anchor_date"):
        lab = g["label_advertiser_id"].notna()
        sets = {}
        for name, mask in (("V1", g.index == g.index), ("V0", g["in_v0"])):
            s = g[mask]
            sets[name] = {
                "users": len(s),
                "train": int((s["split"] == "train").sum()),
                "eval": int((s["split"] == "eval").sum()),
                "labelled": int(s["label_advertiser_id"].notna().sum()),
                "labelled_train": int((s["label_advertiser_id"].notna() & (s["split"] == "train")).sum()),
                "labelled_eval": int((s["label_advertiser_id"].notna() & (s["split"] == "eval")).sum()),
            }
        top = g.loc[lab, "label_advertiser_name"].value_counts().head(10)
        in_hist = [
            int(r.label_advertiser_id) in set(r.active_advertiser_ids)
            for r in g.loc[lab, ["label_advertiser_id", "active_advertiser_ids"]].itertuples()
        ]
        res["dates"][str(x)] = {
            "sets": sets,
            "label_coverage": round(float(lab.mean()), 4) if len(g) else 0.0,
            "label_in_past_advertisers": round(sum(in_hist) / max(1, len(in_hist)), 4),
            "top_labels": {k: int(v) for k, v in top.items()},
            "mean_list_lengths": {
                c: round(float(g[c].map(len).mean()), 2) for c in LIST_FIELDS if c not in _FIXED_TOPS
            },
        }
    return res


def summary_markdown(summary: dict) -> str:
    """The summary of :func:`summarize` as the markdown page ``summary.md``."""
    lines = ["# Example compilation summary", ""]
    for x, d in summary["dates"].items():
        lines += [
            f"## Anchor date {x}",
            "",
            "| set | users | train | eval | labelled | labelled train | labelled eval |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, s in d["sets"].items():
            lines.append(
                f"| {name} | {s['users']} | {s['train']} | {s['eval']} | {s['labelled']} | "
                f"{s['labelled_train']} | {s['labelled_eval']} |"
            )
        lines += [
            "",
            f"Label coverage (V1): {d['label_coverage']:.1%}; label among the user's past-conversion "
            f"advertisers: {d['label_in_past_advertisers']:.1%}",
            "",
            "Top labels: " + ", ".join(f"{k} ({v})" for k, v in d["top_labels"].items()),
            "",
        ]
        if "prompt_tokens" in d:
            pt = d["prompt_tokens"]
            lines += [
                f"Prompt length in tokens ({pt['tokenizer']}, n={pt['n']}): shared prefix {pt['prefix']}, "
                f"per-user suffix p50 {pt['p50']} / p90 {pt['p90']} / p99 {pt['p99']} / max {pt['max']}",
                "",
            ]
    return "\n".join(lines)
