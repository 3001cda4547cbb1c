"""Benchmark of SFT and GRPO training steps (llm_predictor/train/sft.py, grpo.py) with the real SmolLM2-135M-Instruct.

Variants (each a fresh ``train_sft`` / ``train_grpo`` call on the same rows):

* ``sft-full-random``: SFT (sft_text, completion-only loss), all weights, batch ``--sft-batch``, TRL's
  random batches and plain step (every row runs its whole prompt): the trainer before issue 18;
* ``sft-full``: the plain step on batches of one anchor date and similar length (``group_by_date``);
* ``sft-full-prefix``: the same batches, each batch's shared prompt prefix run once
  (``llm_predictor.train.prefix``): the before/after pair, same rows, same order, same loss curve;
* ``sft-lora-random`` / ``sft-lora`` / ``sft-lora-prefix``: the same three with a LoRA adapter (r 16 on all
  linear layers);
* ``grpo-plain``: GRPO (grpo_text, reward of paper eq. 1-5), all weights, ``--grpo-batch`` prompts x
  ``--num-generations`` completions of at most ``--max-completion-length`` tokens per step, TRL's scoring
  (every completion runs its whole prompt);
* ``grpo``: the same with each prompt scored once for all its completions (``train.prefix``).

Each runs ``--warmup`` untimed steps and then ``--steps`` timed optimizer steps; a step's time is the wall
time from the Trainer's step start to its end (GRPO: generation, reward, forward and backward). Reported:
seconds per step, examples (prompts) per second, tokens per second (SFT: prompt + completion tokens of the
batch; GRPO: completions generated), and the model load + data preparation time outside the steps. For SFT
also the positions the model actually ran per step (``tokens_computed``, logged by the trainer) and the
matmul work they imply, as GFLOP/s and as a fraction of this machine's fp32 matmul rate, measured here
(:func:`matmul_gflops`): 2 x (1 forward + 2 backward) x linear weights x positions for all weights,
2 x (1 + 1) x ... for LoRA (no gradient of the frozen weights); attention products and the LM head (only
the few labelled positions are scored) are left out, so it is a lower bound.

The rows are the labelled training rows of a compiled examples folder (``--examples``) or, without it, 16
synthetic rows with a 60-name preset pool (the compile default size; ``bench/synthetic_examples.py``), so
prompt lengths are realistic.
``--quick`` shrinks everything (10-name pool, 64-token user budget, batch 2, 2 prompts x 2 generations x 16
tokens) for a smoke run. Usage (from the repository root)::

    .venv/bin/python bench/train.py                       # 1 warm-up + 3 timed steps per variant
    .venv/bin/python bench/train.py --variants sft-lora sft-lora-prefix --sft-batch 8
    .venv/bin/python bench/train.py --steps 1 --quick --json /tmp/train.json --md /tmp/train.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, matmul_gflops, table_lines, write_report  # noqa: E402
from bench.synthetic_examples import synthetic_examples  # noqa: E402

log = logging.getLogger("bench.train")
VARIANTS = (
    "sft-full-random",
    "sft-full",
    "sft-full-prefix",
    "sft-lora-random",
    "sft-lora",
    "sft-lora-prefix",
    "grpo-plain",
    "grpo",
)


# ---------------------------------------------------------------------------------------------
# Environment header (command, commit, machine)
def _versions() -> dict[str, Any]:
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def linear_params(model: str) -> int:
    """Weights of the decoder blocks' linear layers (attention + MLP) of a Llama-style ``config.json``."""
    cfg = json.loads((Path(model) / "config.json").read_text())
    d, ffn, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = d * cfg.get("num_key_value_heads", cfg["num_attention_heads"]) // cfg["num_attention_heads"]
    return layers * (2 * d * d + 2 * d * kv + 3 * d * ffn)


def _timed(step_seconds: list[float], warmup: int) -> list[float]:
    timed = step_seconds[warmup:]
    return timed or step_seconds


def run_variant(
    name: str, args: argparse.Namespace, df: Any, pools: dict[str, list[str]], work: Path
) -> dict:
    from llm_predictor.train.config import GRPORunConfig, SFTRunConfig, grpo_config, lora_config, sft_config
    from llm_predictor.train.grpo import train_grpo
    from llm_predictor.train.sft import train_sft

    steps = args.warmup + args.steps
    trl_args = {"output_dir": work / name, "max_steps": steps, "seed": args.seed, "logging_steps": 1}
    common = {"model": args.model, "budget_tokens": args.budget_tokens, "save": False}
    t0 = time.perf_counter()
    if name.startswith("sft"):
        lora = name.startswith("sft-lora")
        cfg = SFTRunConfig(
            sft=sft_config(
                **trl_args,
                per_device_train_batch_size=args.sft_batch,
                max_length=args.max_length,
                learning_rate=2e-4 if lora else 2e-5,
            ),
            lora=lora_config() if lora else None,
            group_by_date=not name.endswith("-random"),
            share_prefix=name.endswith("-prefix"),
            **common,
        )
        m = train_sft(cfg, examples_df=df, preset_pool=pools)
        per_step_examples = args.sft_batch
    else:
        cfg = GRPORunConfig(
            grpo=grpo_config(
                batch_size=args.grpo_batch,
                num_generations=args.num_generations,
                max_completion_length=args.max_completion_length,
                **trl_args,
            ),
            max_prompt_length=args.max_length,
            share_prefix=name != "grpo-plain",
            **common,
        )
        m = train_grpo(cfg, examples_df=df, preset_pool=pools)
        per_step_examples = args.grpo_batch
    wall = time.perf_counter() - t0
    timed = _timed(m["step_seconds"], args.warmup)
    s_per_step = sum(timed) / len(timed)
    history = json.loads((work / name / "train_summary.json").read_text())["log_history"]
    row: dict[str, Any] = {
        "variant": name,
        "device": m["device"],
        "score_labelled_only": m.get("score_labelled_only"),
        "steps_timed": len(timed),
        "warmup_steps": min(args.warmup, len(m["step_seconds"]) - len(timed)),
        "s_per_step": round(s_per_step, 3),
        "examples_per_s": round(per_step_examples / s_per_step, 3),
        "step_seconds": m["step_seconds"],
        "setup_s": round(wall - sum(m["step_seconds"]), 2),
        "wall_s": round(wall, 2),
        "examples": m["examples"],
        "prompt_tokens_mean": m["data"].get("prompt_tokens_mean"),
        "params_trainable": m["params_trainable"],
        "params_total": m["params_total"],
    }
    # Tokens per timed step from TRL's cumulative num_tokens (SFT) or completion lengths (GRPO).
    if name.startswith("sft"):
        cumulative = [h["num_tokens"] for h in history if "num_tokens" in h and "loss" in h]
        per_step = [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)][
            args.warmup :
        ] or cumulative
        row["tokens_per_step"] = round(sum(per_step) / len(per_step), 1) if per_step else None
        row["loss_first"], row["loss_last"] = m["train_loss_first"], m["train_loss_last"]
        row["losses"] = [round(h["loss"], 4) for h in history if "loss" in h]
        computed = [h["tokens_computed"] for h in history if "tokens_computed" in h][args.warmup :]
        if computed:
            row["tokens_computed_per_step"] = round(sum(computed) / len(computed), 1)
            passes = 2 if name.startswith("sft-lora") else 3  # forward + backward (inputs [+ weights])
            gflop = 2 * passes * linear_params(args.model) * row["tokens_computed_per_step"] / 1e9
            row["gflop_per_step"] = round(gflop, 1)
            row["gflop_per_s"] = round(gflop / s_per_step, 1)
            row["matmul_fraction"] = round(row["gflop_per_s"] / args.matmul_gflops, 2)
    else:
        lengths = [h["completions/mean_length"] for h in history if "completions/mean_length" in h]
        lengths = lengths[args.warmup :] or lengths
        gen = args.grpo_batch * args.num_generations
        row["completions_per_step"] = gen
        row["tokens_per_step"] = round(gen * sum(lengths) / len(lengths), 1) if lengths else None
        row["reward_first"], row["reward_last"] = m["reward_first"], m["reward_last"]
    row["tokens_per_s"] = (
        round(row["tokens_per_step"] / s_per_step, 1) if row.get("tokens_per_step") else None
    )
    log.info(
        "%s: %.2f s/step, %.2f examples/s, %s tokens/s (setup %.1f s)",
        name,
        s_per_step,
        row["examples_per_s"],
        row["tokens_per_s"],
        row["setup_s"],
    )
    return row


COLUMNS = [
    ("variant", "variant"),
    ("device", "device"),
    ("steps_timed", "timed steps"),
    ("s_per_step", "s/step"),
    ("examples_per_s", "examples/s"),
    ("tokens_per_step", "tokens/step"),
    ("tokens_per_s", "tokens/s"),
    ("tokens_computed_per_step", "positions run/step"),
    ("gflop_per_s", "GFLOP/s"),
    ("matmul_fraction", "of matmul limit"),
    ("prompt_tokens_mean", "prompt tokens"),
    ("params_trainable", "trainable params"),
    ("setup_s", "setup s"),
]


def markdown(report: dict) -> str:
    h, p = report["header"], report["params"]
    lines = [
        "# Training step benchmark (llm_predictor/train/sft.py, grpo.py)",
        "",
        *header_lines(h),
        f"- torch threads: {h['machine']['torch_threads']}; GPU: {h['machine']['cuda'] or 'none'}",
        f"- model: `{p['model']}`; data: {p['data']}; quick: {p['quick']}",
        f"- SFT batch {p['sft_batch']}; GRPO {p['grpo_batch']} prompts x {p['num_generations']} generations, "
        f"max {p['max_completion_length']} new tokens; user budget {p['budget_tokens']} tokens; "
        f"{p['warmup']} warm-up + {p['steps']} timed steps per variant",
        f"- fp32 matmul rate of this machine, measured before the runs: {p['matmul_gflops']:.1f} GFLOP/s",
        "",
        "s/step = mean wall time of the timed optimizer steps (GRPO: generation + reward + forward/backward). "
        "examples/s = prompts per step / s per step. tokens: SFT = prompt + completion tokens trained on per "
        "step; GRPO = completion tokens generated per step. setup = model load, tokenisation, trainer build.",
        "",
        *table_lines(COLUMNS, report["results"]),
    ]
    lines.append("")
    for r in report["results"]:
        if "loss_first" in r:
            curve = ", ".join(f"{v:.4f}" for v in r.get("losses", []))
            lines.append(f"- {r['variant']}: loss per step {curve}")
        elif "reward_first" in r:
            lines.append(f"- {r['variant']}: mean reward {r['reward_first']:.3f} -> {r['reward_last']:.3f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=Path, help="compiled examples folder (default: 16 synthetic rows)")
    ap.add_argument("--model", help="HF model folder (default: the converted SmolLM2-135M-Instruct)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    ap.add_argument("--rows", type=int, default=16, help="example rows used")
    ap.add_argument("--sft-batch", type=int, default=4)
    ap.add_argument("--grpo-batch", type=int, default=4, help="prompts per GRPO step")
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--max-completion-length", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=2048, help="SFT max_length and GRPO max_prompt_length")
    ap.add_argument("--budget-tokens", type=int, default=400, help="per-user prompt budget")
    ap.add_argument("--quick", action="store_true", help="smoke settings (see the module docstring)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", type=Path, help="scratch folder for run outputs (default: a temp dir)")
    ap.add_argument("--json", default="bench/results/train.json")
    ap.add_argument("--md", default="bench/results/train.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("llm_predictor.train.datasets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if args.quick:
        args.sft_batch, args.grpo_batch, args.num_generations = 2, 2, 2
        args.max_completion_length, args.budget_tokens = 16, 64
        args.rows = min(args.rows, 8)

    from llm_predictor.train.common import resolve_model
    from llm_predictor.train.datasets import load_run_examples

    args.model = resolve_model(args.model)
    if args.examples:
        df, pools = load_run_examples(args.examples, max_examples=args.rows, seed=args.seed)
        data = f"{len(df)} labelled train rows of `{args.examples}`"
    else:
        df, pools = synthetic_examples(args.rows, args.seed)
        data = f"{len(df)} synthetic rows, 60-name preset pool"
    if args.quick:
        pools = {k: v[:10] for k, v in pools.items()}
        data += " (quick: pool cut to 10 names)"

    args.matmul_gflops = matmul_gflops(size=1024, seconds=2.0)
    log.info("fp32 matmul: %.1f GFLOP/s", args.matmul_gflops)
    report: dict[str, Any] = {
        "header": header(_versions()),
        "params": {
            "model": args.model,
            "data": data,
            "quick": args.quick,
            "steps": args.steps,
            "warmup": args.warmup,
            "sft_batch": args.sft_batch,
            "grpo_batch": args.grpo_batch,
            "num_generations": args.num_generations,
            "max_completion_length": args.max_completion_length,
            "max_length": args.max_length,
            "budget_tokens": args.budget_tokens,
            "variants": args.variants,
            "matmul_gflops": round(args.matmul_gflops, 1),
        },
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="adprior-bench-train-") as tmp:
        work = args.work_dir or Path(tmp)
        for name in args.variants:
            log.info("[%s] %d warm-up + %d timed steps ...", name, args.warmup, args.steps)
            report["results"].append(run_variant(name, args, df, pools, work))

    write_report(report, markdown(report), args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
