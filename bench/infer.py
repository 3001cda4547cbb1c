"""Benchmark of batch inference (llm_predictor/engines.py): the shared-prefix KV cache against no cache.

The same N users of one anchor date of a compiled examples folder are generated for, in one process and
with one loaded model (the real SmolLM2-135M-Instruct unless ``--model``), by three TransformersEngine
variants:

* ``cached``: batches of ``--batch-size`` users; the chat-templated shared prefix (role, requirements,
  preset pool, output format) is computed once and its KV cache reused for every user;
* ``naive``: one user at a time (batch size 1), no cache: the whole prompt is computed per user;
* ``batched``: batches of ``--batch-size`` users, no cache (left padding, as llm_predictor.decoding).

Prompts are built as in nightly inference: ``prompts.shared_prefix(INFERENCE_TEMPLATE, pool)`` +
``prompts.user_suffix`` with a ``--budget-tokens`` user budget counted with the model's tokenizer; constrained
greedy decoding (names from the user's sanitised active advertisers ∪ the preset pool, as
llm_predictor.evaluate.run_llm) with ``--max-new-tokens``. One untimed warm-up call (2 users, 4 tokens,
another prefix) runs first. Each variant's time is the wall time of one ``engine.generate`` call over all
N users; for ``cached`` it includes the one-off prefix computation (also reported on its own). Reported:
users/s and the ratio to ``naive``, generated tokens/s, mean prompt tokens and the fraction of them
computed per user, padding tokens, the parse status, and how many users' answers equal ``naive``'s.

Usage (from the repository root)::

    .venv/bin/python bench/infer.py                      # 16 users
    .venv/bin/python bench/infer.py --users 4 --max-new-tokens 32 --json /tmp/infer.json --md /tmp/infer.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.infer")
VARIANTS = ("cached", "naive", "batched")


def _versions() -> dict[str, Any]:
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def build_inputs(examples: Path, day: date, n: int, seed: int, tokenizer: Any,
                 budget_tokens: int) -> tuple[str, list[str], list[list[str]], list[int]]:
    """(shared prefix, user suffixes, allowed names per user, user ids) for ``n`` sampled users of ``day``."""
    from llm_predictor.compile import load_examples, load_preset_pool
    from llm_predictor.prompts import (
        INFERENCE_TEMPLATE,
        PromptBudget,
        hf_token_counter,
        sanitize_text,
        shared_prefix,
        user_suffix,
    )

    df = load_examples(examples, day)
    if df.empty:
        raise SystemExit(f"no examples for {day} under {examples}")
    rows = df.sort_values("user_id").sample(n=min(n, len(df)), random_state=seed).to_dict("records")
    pool = load_preset_pool(examples, day)
    budget = PromptBudget(max_user_tokens=budget_tokens, count_tokens=hf_token_counter(tokenizer))
    prefix = shared_prefix(INFERENCE_TEMPLATE, pool, budget.max_item_chars)
    suffixes, allowed = [], []
    for r in rows:
        suffixes.append(user_suffix(INFERENCE_TEMPLATE, r, budget))
        active = r["active_advertisers"]
        active = [] if active is None else list(active)
        names = [sanitize_text(x, budget.max_item_chars) for x in [*active, *pool]]
        allowed.append(list(dict.fromkeys(x for x in names if x)))
    return prefix, suffixes, allowed, [int(r["user_id"]) for r in rows]


def run_variant(name: str, model: Any, tokenizer: Any, args: argparse.Namespace, prefix: str,
                suffixes: list[str], allowed: list[list[str]]) -> tuple[dict[str, Any], list[str]]:
    """Time one variant's generate over all users; (result row, answer texts)."""
    from llm_predictor.engines import EngineConfig, TransformersEngine
    from llm_predictor.parsing import parse_answer

    cfg = EngineConfig(
        model=args.model, batch_size=1 if name == "naive" else args.batch_size,
        max_new_tokens=args.max_new_tokens, constrained=True, max_names=args.max_names,
        prefix_cache=name == "cached",
    )
    engine = TransformersEngine(cfg, model=model, tokenizer=tokenizer)
    t0 = time.perf_counter()
    gens = engine.generate(prefix, suffixes, allowed)
    seconds = time.perf_counter() - t0
    st = engine.stats
    n = len(gens)
    status = [parse_answer(g.text, max_advertisers=args.max_names).status for g in gens]
    row = {
        "variant": name,
        "batch_size": cfg.batch_size,
        "prefix_cache": cfg.prefix_cache,
        "users": n,
        "seconds": round(seconds, 2),
        "users_per_s": round(n / seconds, 3),
        "generated_tokens": st["generated_tokens"],
        "gen_tokens_per_s": round(st["generated_tokens"] / seconds, 1),
        "mean_prompt_tokens": round(st["prompt_tokens"] / n, 1),
        "mean_computed_prompt_tokens": round(st["computed_prompt_tokens"] / n, 1),
        "computed_fraction": round(st["computed_prompt_tokens"] / st["prompt_tokens"], 3),
        "prefix_tokens": st["prefix_tokens"],
        "prefix_seconds": round(st["prefix_seconds"], 2),
        "prefix_misses": st["prefix_misses"],
        "padding_tokens": st["padding_tokens"],
        "batches": st["batches"],
        "ok_rate": round(status.count("ok") / n, 3),
        "mean_names": round(sum(len(parse_answer(g.text).advertisers) for g in gens) / n, 2),
    }
    log.info("[%s] %d users in %.1f s: %.3f users/s, %.1f generated tok/s, %.0f%% of prompt tokens computed",
             name, n, seconds, row["users_per_s"], row["gen_tokens_per_s"], 100 * row["computed_fraction"])
    return row, [g.text for g in gens]


COLUMNS = [
    ("variant", "variant"), ("batch_size", "batch"), ("users", "users"), ("seconds", "s"),
    ("users_per_s", "users/s"), ("speedup_vs_naive", "x naive"), ("gen_tokens_per_s", "gen tok/s"),
    ("mean_prompt_tokens", "prompt tok/user"), ("mean_computed_prompt_tokens", "computed tok/user"),
    ("computed_fraction", "computed frac"), ("prefix_seconds", "prefix s"), ("padding_tokens", "pad tok"),
    ("ok_rate", "ok rate"), ("same_as_naive", "same as naive"),
]


def markdown(report: dict) -> str:
    h, p = report["header"], report["params"]
    lines = [
        "# Batch inference benchmark (shared-prefix KV cache)",
        "",
        *header_lines(h),
        f"- model: `{p['model_version']}` ({p['dtype']} on {p['device']}); examples `{p['examples']}`, anchor "
        f"date {p['date']}, {p['users']} users (sample seed {p['seed']}); user budget {p['budget_tokens']} "
        f"tokens; shared prefix {p['prefix_chars']} chars; constrained greedy, max {p['max_names']} names, "
        f"max_new_tokens {p['max_new_tokens']}",
        f"- warm-up (untimed): {report['warmup_s']} s; model load (untimed): {report['load_s']} s",
        "",
        "s = wall time of one `engine.generate` over all users (for `cached` including the one-off prefix "
        "computation, `prefix s`). x naive = users/s over `naive`'s. computed frac = prompt tokens run through "
        "the model per user / full prompt tokens (padding excluded; `pad tok` counts it). ok rate = answers "
        "that `parse_answer` reads as 'ok'. same as naive = users whose answer text equals `naive`'s.",
        "",
        *table_lines(COLUMNS, report["results"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=Path, default=Path("data/cal/examples"), help="compiled examples folder")
    ap.add_argument("--date", default="2026-06-15", help="anchor date (YYYY-MM-DD)")
    ap.add_argument("--users", type=int, default=16, help="users generated for (the same in every variant)")
    ap.add_argument("--model", help="HF model folder (default: the converted SmolLM2-135M-Instruct)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--batch-size", type=int, default=8, help="users per batch (cached and batched)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-names", type=int, default=20)
    ap.add_argument("--budget-tokens", type=int, default=1024, help="per-user prompt budget")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="user sample seed")
    ap.add_argument("--json", default="bench/results/infer.json")
    ap.add_argument("--md", default="bench/results/infer.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from llm_predictor.decoding import load_model
    from llm_predictor.engines import EngineConfig, TransformersEngine, model_version

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.model is None:
        from llm_predictor.base_model import ensure_base_model

        args.model = str(ensure_base_model())
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model, args.device, args.dtype)
    load_s = round(time.perf_counter() - t0, 2)
    prefix, suffixes, allowed, user_ids = build_inputs(args.examples, date.fromisoformat(args.date), args.users,
                                                       args.seed, tokenizer, args.budget_tokens)
    report: dict = {
        "header": header(_versions()),
        "params": {
            "examples": str(args.examples), "date": args.date, "users": len(suffixes), "user_ids": user_ids,
            "model": args.model, "model_version": model_version(args.model), "device": str(model.device),
            "dtype": str(model.dtype).removeprefix("torch."), "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens, "max_names": args.max_names,
            "budget_tokens": args.budget_tokens, "seed": args.seed, "prefix_chars": len(prefix),
        },
        "load_s": load_s,
        "results": [],
    }

    # Untimed warm-up (first-call allocations, kernel selection) on another prefix, so no cache is reused.
    t0 = time.perf_counter()
    warm = TransformersEngine(EngineConfig(model=args.model, max_new_tokens=4, constrained=True),
                              model=model, tokenizer=tokenizer)
    warm.generate("warm-up " + prefix, suffixes[:2], allowed[:2])
    report["warmup_s"] = round(time.perf_counter() - t0, 2)

    texts: dict[str, list[str]] = {}
    for name in args.variants:
        row, texts[name] = run_variant(name, model, tokenizer, args, prefix, suffixes, allowed)
        report["results"].append(row)
    naive = next((r for r in report["results"] if r["variant"] == "naive"), None)
    for r in report["results"]:
        if naive is not None:
            r["speedup_vs_naive"] = round(r["users_per_s"] / naive["users_per_s"], 2)
            r["same_as_naive"] = sum(a == b for a, b in zip(texts[r["variant"]], texts["naive"], strict=True))
    write_report(report, markdown(report), args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
