"""Run configs (llm_predictor.train.config): TRL's and PEFT's configs built with this project's defaults.

The expected values below are what the trainers passed to TRL before the run configs composed TRL's own
``SFTConfig`` / ``GRPOConfig`` and PEFT's ``LoraConfig`` (they were re-declared field by field): the defaults
must not move without a deliberate change here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_predictor.train.config import (
    GRPORunConfig,
    SFTRunConfig,
    grpo_batch_args,
    grpo_config,
    lora_config,
    sft_config,
)

# TrainingArguments values both trainers got by default (to_dict() form: enums as strings, report_to a list).
SHARED = {
    "num_train_epochs": 1.0,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "max_grad_norm": 1.0,
    "seed": 42,
    "data_seed": 42,
    "logging_steps": 1,
    "logging_strategy": "steps",
    "save_strategy": "no",
    "eval_strategy": "no",
    "report_to": [],
    "gradient_checkpointing": False,
    "fp16": False,
}
SFT = {
    **SHARED,
    "output_dir": "models/sft",
    "max_steps": 50,  # the CLI's 50 since the renovation (the library said 100; one source now)
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 2e-5,
    "weight_decay": 0.0,
    "dataloader_num_workers": 0,
    "max_length": 1536,
    "completion_only_loss": True,
    "assistant_only_loss": False,
    "packing": False,
}
GRPO = {
    **SHARED,
    "output_dir": "models/grpo",
    "max_steps": 50,
    "learning_rate": 1e-6,
    "per_device_train_batch_size": 16,  # 4 prompts x 4 generations, one micro-batch
    "gradient_accumulation_steps": 1,
    "generation_batch_size": 16,
    "num_generations": 4,
    "max_completion_length": 256,
    "temperature": 1.0,
    "top_p": 1.0,
    "beta": 0.0,
    "loss_type": "dapo",
    "remove_unused_columns": False,
    "log_completions": False,
}
LORA = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "bias": "none",
    "task_type": "CAUSAL_LM",
}


def _device() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"use_cpu": not cuda, "bf16": False, "dataloader_pin_memory": cuda}


def _subset(values: dict, keys) -> dict:
    return {k: values[k] for k in keys}


def test_trl_defaults_unchanged() -> None:
    sft = sft_config().to_dict()
    assert _subset(sft, SFT) == SFT and _subset(sft, _device()) == _device()
    grpo = grpo_config().to_dict()
    assert _subset(grpo, GRPO) == GRPO and _subset(grpo, _device()) == _device()
    lora = lora_config()
    assert {k: getattr(lora, k) for k in LORA} == LORA

    run = SFTRunConfig()
    assert run.sft.to_dict() == sft and run.lora is None
    assert run.output_dir == Path("models/sft") and run.seed == 42
    assert (run.template, run.budget_tokens, run.split, run.max_train_examples) == (
        "sft_text",
        400,
        "train",
        None,
    )
    assert run.cpu_score_labelled_only and run.save and not run.resume
    g = GRPORunConfig()
    assert g.grpo.to_dict() == grpo and g.lora is None and g.output_dir == Path("models/grpo")
    assert (g.template, g.budget_tokens, g.max_prompt_length) == ("grpo_text", 400, 1536)
    assert (g.prompts_per_step, g.num_generations) == (4, 4)


def test_factory_conventions() -> None:
    """Checkpoints only with save_steps > 0 (last 2 kept), max_steps <= 0 = epochs, data_seed follows seed."""
    args = sft_config(save_steps=2, max_steps=0, seed=7, output_dir=Path("runs/x"))
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", 2, 2)
    assert args.max_steps == -1 and args.data_seed == 7 and args.output_dir == "runs/x"
    g = grpo_config(batch_size=2, num_generations=4, micro_batch_size=2, learning_rate=5e-5)
    assert (g.per_device_train_batch_size, g.gradient_accumulation_steps, g.generation_batch_size) == (
        2,
        4,
        8,
    )
    assert GRPORunConfig(grpo=g).prompts_per_step == 2 and g.learning_rate == 5e-5
    lora = lora_config(r=4, lora_alpha=8)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 8, 0.0)


def test_grpo_batch_args() -> None:
    assert grpo_batch_args(4, 4, None) == {
        "per_device_train_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "generation_batch_size": 16,
        "num_generations": 4,
    }
    assert grpo_batch_args(4, 4, 8)["gradient_accumulation_steps"] == 2
    with pytest.raises(ValueError):
        grpo_batch_args(2, 2, 3)
    with pytest.raises(ValueError):
        grpo_batch_args(2, 1, None)
