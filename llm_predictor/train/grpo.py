"""GRPO of the advertiser predictor (paper 3.4.2) with ``trl.GRPOTrainer``.

The inference prompt (``grpo_text``, paper A.3; ``grpo_sid`` with SID Sequences) asks for 20 advertisers and
5 interests in XML; completions are scored with the reward of paper eq. 1-5
(:func:`llm_predictor.train.rewards.paper_reward`). The run config is
:class:`llm_predictor.train.config.GRPORunConfig`; its batch shape (prompts x generations per optimizer
step) is :func:`llm_predictor.train.config.grpo_batch_args`.
"""

from __future__ import annotations

import logging
from typing import Any

from llm_predictor.train import common, prefix
from llm_predictor.train.config import GRPORunConfig
from llm_predictor.train.datasets import grpo_dataset, prepare_run_data
from llm_predictor.train.rewards import make_reward

log = logging.getLogger(__name__)


def prepare_grpo_data(
    cfg: GRPORunConfig, tokenizer: Any, examples_df: Any = None, preset_pool: Any = None
) -> tuple[Any, dict[str, Any]]:
    """The GRPO dataset of ``cfg`` (over-long prompts dropped) and its length statistics.

    Args:
        cfg: the run config (examples folder, dates, split, template, budget, max_prompt_length).
        tokenizer: the model's tokenizer.
        examples_df: examples table to use instead of reading ``cfg.examples``.
        preset_pool: preset pool (list or {date: list}) to use with ``examples_df``.

    Returns:
        (``datasets.Dataset`` with prompt and label_advertiser_name, statistics dict).
    """
    return prepare_run_data(
        cfg,
        tokenizer,
        examples_df,
        preset_pool,
        lambda df, pool, budget: grpo_dataset(df, pool, cfg.template, budget),
        cfg.max_prompt_length,
        "prompt_tokens",
        "GRPO",
    )


def build_grpo_trainer(
    cfg: GRPORunConfig,
    dataset: Any,
    tokenizer: Any,
    reward_funcs: list[Any] | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A ``trl.GRPOTrainer`` for ``cfg`` on a prepared dataset (see :func:`prepare_grpo_data`).

    Args:
        cfg: the run config; ``cfg.grpo`` is passed to TRL as it is, ``cfg.lora`` to PEFT.
        dataset: ``Dataset`` with a conversational ``prompt`` and ``label_advertiser_name``.
        tokenizer: the model's tokenizer (left padding for generation).
        reward_funcs: TRL reward functions; None = ``[make_reward(cfg.reward)]`` (paper eq. 1-5).
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        The trainer.
    """
    trainer_class = prefix.prefix_sharing_grpo_trainer(cfg.share_prefix)
    return trainer_class(
        model=common.resolve_model(cfg.model),
        reward_funcs=reward_funcs if reward_funcs is not None else [make_reward(cfg.reward)],
        args=cfg.grpo,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=cfg.lora,
        callbacks=callbacks,
    )


def train_grpo(
    cfg: GRPORunConfig,
    examples_df: Any = None,
    preset_pool: Any = None,
    reward_funcs: list[Any] | None = None,
) -> dict[str, Any]:
    """GRPO on the 20-advertiser + 5-interest prompt with the reward of paper eq. 1-5 (paper 3.4.2).

    Args:
        cfg: what to train on, how, and where to write; see :class:`GRPORunConfig`.
        examples_df: examples table (pandas) to use instead of reading ``cfg.examples``.
        preset_pool: preset pool (list, or {anchor date: list}) for ``examples_df``.
        reward_funcs: TRL reward functions; None = ``[make_reward(cfg.reward)]``.

    Returns:
        Metrics: reward_first/last (mean reward of the first/last logged step), reward_std_last, steps,
        seconds, s_per_step, completions_per_s, mean completion length, dataset statistics and the saved
        model folder; also written with the config and TRL's log history to
        ``output_dir/train_summary.json``.
    """

    model_path = common.resolve_model(cfg.model)
    tokenizer = common.load_tokenizer(model_path, padding_side="left")
    dataset, data_stats = prepare_grpo_data(cfg, tokenizer, examples_df, preset_pool)
    prompts, generations = cfg.prompts_per_step, cfg.num_generations
    log.info(
        "GRPO on %d prompts (%s) from %s: %d prompts x %d generations per step",
        len(dataset),
        data_stats,
        model_path,
        prompts,
        generations,
    )
    timer = common.step_timer("grpo")
    trainer = build_grpo_trainer(cfg, dataset, tokenizer, reward_funcs, callbacks=[timer])
    common.quiet_progress(trainer)
    _, seconds, compact = common.run_trainer(trainer, cfg)
    history = trainer.state.log_history
    rewards = common.history_values(history, "reward")
    steps = trainer.state.global_step
    step_time = sum(timer.step_seconds) or seconds
    completions = steps * prompts * generations
    metrics: dict[str, Any] = {
        **common.run_metrics("grpo", cfg, model_path, compact, dataset, data_stats),
        **common.timing(timer, steps, seconds),
        "prompts_per_step": prompts,
        "num_generations": generations,
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "reward_std_last": (common.history_values(history, "reward_std") or [None])[-1],
        "completion_length_mean_last": (common.history_values(history, "completions/mean_length") or [None])[
            -1
        ],
        "completions": completions,
        "completions_per_s": round(completions / step_time, 3) if step_time else None,
        "examples_per_s": round(steps * prompts / step_time, 3) if step_time else None,
    }
    common.finish_run(trainer, tokenizer, cfg, metrics, history)
    log.info(
        "GRPO done: %d steps in %.1f s, reward %s -> %s",
        steps,
        seconds,
        metrics["reward_first"],
        metrics["reward_last"],
    )
    return metrics
