"""Training verbs: ``adprior train sft|grpo`` over typed run configs, whose defaults are the options'."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from adprior.cli.options import console, default_of
from llm_predictor.train.config import (
    GRPO_DEFAULTS,
    SFT_DEFAULTS,
    GRPORunConfig,
    SFTRunConfig,
    grpo_config,
    lora_config,
    sft_config,
)


@click.group()
def train() -> None:
    """Post-training: SFT (paper 3.4.1) and GRPO with the paper's reward (3.4.2)."""


def _train_common(
    run: type, trl_defaults: Mapping[str, Any], batch_size: int
) -> Callable[[Callable], Callable]:
    """Options shared by both trainers; defaults from the run config ``run`` and TRL's ``trl_defaults``.

    ``batch_size`` is the trainer's own batch default (SFT: rows per device; GRPO: prompts per step).
    """

    def decorate(f: Callable) -> Callable:
        f = click.option("--examples", type=click.Path(exists=True, path_type=Path), required=True)(f)
        f = click.option(
            "--out", type=click.Path(path_type=Path), required=True, help="Output model folder."
        )(f)
        f = click.option(
            "--model",
            type=click.Path(exists=True, path_type=Path),
            default=default_of(run, "model"),
            help="Start from this HF folder (default: SmolLM2-135M-Instruct).",
        )(f)
        f = click.option(
            "--max-steps", type=int, default=default_of(trl_defaults, "max_steps"), show_default=True
        )(f)
        f = click.option("--batch-size", type=int, default=batch_size, show_default=True)(f)
        f = click.option(
            "--lr",
            type=float,
            default=default_of(trl_defaults, "learning_rate"),
            show_default=True,
            help="Peak learning rate.",
        )(f)
        f = click.option("--lora", is_flag=True, help="LoRA (peft), merged into the saved model.")(f)
        f = click.option(
            "--budget-tokens",
            type=int,
            default=default_of(run, "budget_tokens"),
            show_default=True,
            help="Token budget of the per-user prompt part.",
        )(f)
        f = click.option("--max-train-examples", type=int, default=default_of(run, "max_train_examples"))(f)
        f = click.option(
            "--gradient-checkpointing",
            is_flag=True,
            default=default_of(trl_defaults, "gradient_checkpointing"),
            help="Recompute activations in backward: less memory, slower steps.",
        )(f)
        f = click.option(
            "--save-steps",
            type=int,
            default=default_of(trl_defaults, "save_steps"),
            show_default=True,
            help="> 0: a resumable checkpoint under --out every N steps (the last 2 kept).",
        )(f)
        f = click.option(
            "--resume",
            is_flag=True,
            default=default_of(run, "resume"),
            help="Continue from the newest checkpoint under --out (same settings).",
        )(f)
        return f

    return decorate


def _split_options(
    out: Path,
    max_steps: int,
    lr: float,
    gradient_checkpointing: bool,
    save_steps: int,
    lora: bool,
    **run: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shared options (but --batch-size) as TRL's arguments and the run config's own fields.

    ``run`` (examples, model, budget_tokens, max_train_examples, resume, template) passes through as given.
    """
    trl = {
        "output_dir": out,
        "max_steps": max_steps,
        "learning_rate": lr,
        "gradient_checkpointing": gradient_checkpointing,
        "save_steps": save_steps,
    }
    return trl, {"lora": lora_config() if lora else None, **run}


@train.command("sft")
@_train_common(SFTRunConfig, SFT_DEFAULTS, batch_size=default_of(SFT_DEFAULTS, "per_device_train_batch_size"))
@click.option(
    "--template",
    type=click.Choice(["sft_text", "sft_text_20", "grpo_text", "sft_sid", "grpo_sid"]),
    default=default_of(SFTRunConfig, "template"),
    show_default=True,
    help="sft_text: 1 advertiser (A.1); sft_text_20: 20 names '|'-joined; grpo_text: the inference prompt "
    "(A.3) with an XML target, the warm start for GRPO; sft_sid / grpo_sid: the same with SID Sequences "
    "(examples from `adprior sid attach`, model from `adprior sid cpt`).",
)
def train_sft_cmd(batch_size: int, **options: Any) -> None:
    """SFT on prompt-completion pairs, loss on the completion only (1- or 20-advertiser prompt)."""
    from llm_predictor.train.sft import train_sft

    trl, run = _split_options(**options)
    cfg = SFTRunConfig(sft=sft_config(per_device_train_batch_size=batch_size, **trl), **run)
    console.print_json(json.dumps(train_sft(cfg), default=str))


@train.command("grpo")
@_train_common(GRPORunConfig, GRPO_DEFAULTS, batch_size=default_of(grpo_config, "batch_size"))
@click.option(
    "--num-generations", type=int, default=default_of(grpo_config, "num_generations"), show_default=True
)
@click.option(
    "--max-completion-length",
    type=int,
    default=default_of(GRPO_DEFAULTS, "max_completion_length"),
    show_default=True,
)
@click.option(
    "--micro-batch-size",
    type=int,
    default=default_of(grpo_config, "micro_batch_size"),
    help="Completions per forward/backward (gradient accumulation); must divide batch size x generations. "
    "Default: all of them at once.",
)
@click.option(
    "--template",
    type=click.Choice(["grpo_text", "grpo_sid"]),
    default=default_of(GRPORunConfig, "template"),
    show_default=True,
    help="grpo_sid: the inference prompt with SID Sequences (examples from `adprior sid attach`).",
)
def train_grpo_cmd(
    batch_size: int,
    num_generations: int,
    max_completion_length: int,
    micro_batch_size: int | None,
    **options: Any,
) -> None:
    """GRPO with the reward of paper eq. 1-5 (20 advertisers + up to 5 interests, XML)."""
    from llm_predictor.train.grpo import train_grpo

    trl, run = _split_options(**options)
    grpo = grpo_config(
        batch_size=batch_size,
        num_generations=num_generations,
        micro_batch_size=micro_batch_size,
        max_completion_length=max_completion_length,
        **trl,
    )
    console.print_json(json.dumps(train_grpo(GRPORunConfig(grpo=grpo, **run)), default=str))


@train.command("ship")
@click.option(
    "--run",
    "run_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="A finished `train sft|grpo --lora` output folder (or one of its checkpoint-N folders).",
)
@click.option(
    "--name",
    default="default",
    show_default=True,
    help="Adapter folder under llm_predictor/adapters ('default' is what the nightly serves).",
)
@click.option(
    "--prepare-command",
    "prepare_commands",
    multiple=True,
    help="A data command the run depends on (simulate, compile), recorded before the train command.",
)
@click.option("--note", "notes", default=None, help="A free-text line for MODEL.md (e.g. total wall time).")
def ship_cmd(run_dir: Path, name: str, prepare_commands: tuple[str, ...], notes: str | None) -> None:
    """Commit a LoRA run's adapter (fp16) with its manifest and MODEL.md: the nightly's default model."""
    from llm_predictor.shipped import ship_adapter

    extra: dict[str, Any] = {"prepare_commands": list(prepare_commands)}
    if notes:
        extra["notes"] = notes
    out = ship_adapter(run_dir, name, extra=extra)
    console.print(f"shipped {run_dir} -> {out}")
    console.print((out / "MODEL.md").read_text(), markup=False, highlight=False)


@train.command("recipe")
@click.option(
    "--preset",
    type=click.Choice(["gpu", "cpu", "dry-run"]),
    default="cpu",
    show_default=True,
    help="gpu: paper-like scale (bf16, full fine-tuning, batch 32, vLLM GRPO rollouts); cpu: LoRA, batch "
    "8; dry-run: every stage for 2 steps (a set-up check).",
)
@click.option("--examples", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None, help="Raw-table root.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="sft/, grpo/, eval/ go here.")
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None, help="Start model.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a RecipeConfig field (e.g. --set sft_steps=500 --set use_vllm=false).",
)
def recipe_cmd(
    preset: str, examples: Path, data: Path | None, out: Path, model: Path | None, overrides: tuple[str, ...]
) -> None:
    """SFT -> GRPO -> eval in one command (resumable stage by stage); see llm_predictor/train/recipe.py."""
    from llm_predictor.train.recipe import parse_overrides, run_recipe
    from llm_predictor.train.recipe import preset as recipe_preset

    cfg = recipe_preset(
        preset, examples=examples, data=data, out=out, model=model, **parse_overrides(overrides)
    )
    console.print_json(json.dumps(run_recipe(cfg)["stages"], default=str))
