"""Training verbs: ``adprior train sft|grpo`` over typed run configs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from adprior.cli.options import console


@click.group()
def train() -> None:
    """Post-training: SFT (paper 3.4.1) and GRPO with the paper's reward (3.4.2)."""


def _train_common(f):  # options shared by both trainers
    f = click.option("--examples", type=click.Path(exists=True, path_type=Path), required=True)(f)
    f = click.option("--out", type=click.Path(path_type=Path), required=True, help="Output model folder.")(f)
    f = click.option(
        "--model",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Start from this HF folder (default: SmolLM2-135M-Instruct).",
    )(f)
    f = click.option("--max-steps", type=int, default=50, show_default=True)(f)
    f = click.option("--batch-size", type=int, default=4, show_default=True)(f)
    f = click.option("--lr", type=float, default=None, help="Learning rate (default: the config's).")(f)
    f = click.option("--lora", is_flag=True, help="LoRA (peft), merged into the saved model.")(f)
    f = click.option(
        "--budget-tokens",
        type=int,
        default=400,
        show_default=True,
        help="Token budget of the per-user prompt part.",
    )(f)
    f = click.option("--max-train-examples", type=int, default=None)(f)
    f = click.option(
        "--gradient-checkpointing",
        is_flag=True,
        help="Recompute activations in backward: less memory, slower steps.",
    )(f)
    f = click.option(
        "--save-steps",
        type=int,
        default=0,
        show_default=True,
        help="> 0: a resumable checkpoint under --out every N steps (the last 2 kept).",
    )(f)
    f = click.option(
        "--resume", is_flag=True, help="Continue from the newest checkpoint under --out (same settings)."
    )(f)
    return f


@train.command("sft")
@_train_common
@click.option(
    "--template",
    type=click.Choice(["sft_text", "sft_text_20", "grpo_text", "sft_sid", "grpo_sid"]),
    default="sft_text",
    show_default=True,
    help="sft_text: 1 advertiser (A.1); sft_text_20: 20 names '|'-joined; grpo_text: the inference prompt "
    "(A.3) with an XML target, the warm start for GRPO; sft_sid / grpo_sid: the same with SID Sequences "
    "(examples from `adprior sid attach`, model from `adprior sid cpt`).",
)
def train_sft_cmd(
    examples: Path,
    out: Path,
    model: Path | None,
    max_steps: int,
    batch_size: int,
    lr: float | None,
    lora: bool,
    budget_tokens: int,
    max_train_examples: int | None,
    gradient_checkpointing: bool,
    save_steps: int,
    resume: bool,
    template: str,
) -> None:
    """SFT on prompt-completion pairs, loss on the completion only (1- or 20-advertiser prompt)."""
    from llm_predictor.train.trainers import SFTRunConfig, train_sft

    cfg = SFTRunConfig(
        examples=examples,
        output_dir=out,
        model=model,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        lora=lora,
        budget_tokens=budget_tokens,
        max_train_examples=max_train_examples,
        template=template,
        gradient_checkpointing=gradient_checkpointing,
        save_steps=save_steps,
        resume=resume,
    )
    if lr is not None:
        cfg.learning_rate = lr
    console.print_json(json.dumps(train_sft(cfg), default=str))


@train.command("grpo")
@_train_common
@click.option("--num-generations", type=int, default=4, show_default=True)
@click.option("--max-completion-length", type=int, default=256, show_default=True)
@click.option(
    "--micro-batch-size",
    type=int,
    default=None,
    help="Completions per forward/backward (gradient accumulation); must divide batch size x generations. "
    "Default: all of them at once.",
)
@click.option(
    "--template",
    type=click.Choice(["grpo_text", "grpo_sid"]),
    default="grpo_text",
    show_default=True,
    help="grpo_sid: the inference prompt with SID Sequences (examples from `adprior sid attach`).",
)
def train_grpo_cmd(
    examples: Path,
    out: Path,
    model: Path | None,
    max_steps: int,
    batch_size: int,
    lr: float | None,
    lora: bool,
    budget_tokens: int,
    max_train_examples: int | None,
    gradient_checkpointing: bool,
    save_steps: int,
    resume: bool,
    num_generations: int,
    max_completion_length: int,
    micro_batch_size: int | None,
    template: str,
) -> None:
    """GRPO with the reward of paper eq. 1-5 (20 advertisers + up to 5 interests, XML)."""
    from llm_predictor.train.trainers import GRPORunConfig, train_grpo

    cfg = GRPORunConfig(
        examples=examples,
        output_dir=out,
        model=model,
        max_steps=max_steps,
        batch_size=batch_size,
        lora=lora,
        budget_tokens=budget_tokens,
        max_train_examples=max_train_examples,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        template=template,
        micro_batch_size=micro_batch_size,
        gradient_checkpointing=gradient_checkpointing,
        save_steps=save_steps,
        resume=resume,
    )
    if lr is not None:
        cfg.learning_rate = lr
    console.print_json(json.dumps(train_grpo(cfg), default=str))
