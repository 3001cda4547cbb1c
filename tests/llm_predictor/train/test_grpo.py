"""Real TRL GRPO steps on CPU with a tiny randomly initialised Llama (llm_predictor.train.grpo).

The model and examples: tests/support/tiny_train.py. ``budget_tokens=64`` cuts the per-user part; the shared
prefix of grpo_text (~570 SmolLM2 tokens) cannot be cut, so ``max_prompt_length=768``. 2 steps of 2 prompts x
2 generations x 16 tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

from llm_predictor.train.config import GRPORunConfig, grpo_config
from llm_predictor.train.grpo import train_grpo
from llm_predictor.train.rewards import paper_reward
from tests.support.tiny_train import LABELS, reload_model


def test_grpo_steps(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    calls: list[dict] = []

    def spy_reward(completions, label_advertiser_name, **kwargs):
        calls.append({"n": len(completions), "labels": list(label_advertiser_name), "keys": set(kwargs)})
        return paper_reward(completions, label_advertiser_name, **kwargs)

    out = tmp_path / "grpo"
    cfg = GRPORunConfig(
        grpo=grpo_config(
            batch_size=2,
            num_generations=2,
            output_dir=out,
            max_steps=2,
            max_completion_length=16,
            learning_rate=1e-4,
            disable_tqdm=True,
        ),
        examples=examples_dir,
        model=tiny_model,
        max_prompt_length=768,
        budget_tokens=64,
    )
    m = train_grpo(cfg, reward_funcs=[spy_reward])
    assert m["steps"] == 2 and len(calls) == 2
    assert all(c["n"] == 4 and set(c["labels"]) <= set(LABELS) for c in calls)  # 2 prompts x 2 generations
    assert "user_id" in calls[0]["keys"] and "prompts" in calls[0]["keys"]
    assert m["reward_first"] is not None and math.isfinite(m["reward_last"])
    assert m["reward_last"] >= -4.0  # the lowest possible R_total
    assert m["s_per_step"] > 0 and m["completions"] == 8
    assert (out / "train_summary.json").exists()
    assert reload_model(out).config.num_hidden_layers == 2
