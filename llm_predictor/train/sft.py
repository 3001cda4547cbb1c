"""Supervised fine-tuning of the advertiser predictor (paper 3.4.1) with ``trl.SFTTrainer``.

The single-advertiser prompt (``sft_text``, paper A.1), the 20-advertiser variant (``sft_text_20``) or the
inference prompt with an XML target (``grpo_text``, the warm start for GRPO) as conversational
prompt-completion data, with the loss on the completion only (``SFTConfig.completion_only_loss=True``); the
tokenizer's chat template is applied by TRL. The run config is
:class:`llm_predictor.train.config.SFTRunConfig`.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from llm_predictor.train import common, prefix
from llm_predictor.train.config import SFTRunConfig
from llm_predictor.train.datasets import prepare_run_data, sft_dataset

log = logging.getLogger(__name__)


def prepare_sft_data(
    cfg: SFTRunConfig, tokenizer: Any, examples_df: Any = None, preset_pool: Any = None
) -> tuple[Any, dict[str, Any]]:
    """The SFT dataset of ``cfg`` (over-long rows dropped) and its length statistics.

    Args:
        cfg: the run config (examples folder, dates, split, template, budget, ``sft.max_length``).
        tokenizer: the model's tokenizer (counts the prompt budget and lengths).
        examples_df: examples table to use instead of reading ``cfg.examples``.
        preset_pool: preset pool (list or {date: list}) to use with ``examples_df``.

    Returns:
        (``datasets.Dataset`` in conversational prompt-completion format, statistics dict).
    """
    return prepare_run_data(
        cfg,
        tokenizer,
        examples_df,
        preset_pool,
        lambda df, pool, budget: sft_dataset(df, pool, cfg.template, budget, cfg.popular),
        cfg.sft.max_length,
        "total_tokens",
        "SFT",
    )


def build_sft_trainer(
    cfg: SFTRunConfig, dataset: Any, tokenizer: Any, callbacks: list[Any] | None = None
) -> Any:
    """A ``trl.SFTTrainer`` for ``cfg`` on a prepared dataset (see :func:`prepare_sft_data`).

    Args:
        cfg: the run config; ``cfg.sft`` is passed to TRL as it is, ``cfg.lora`` to PEFT.
        dataset: conversational prompt-completion ``Dataset``; with ``cfg.group_by_date`` it is read in
            batches of one anchor date (:func:`llm_predictor.train.prefix.group_by_key`) and, with
            ``cfg.share_prefix``, each batch's shared prompt prefix runs once
            (:func:`llm_predictor.train.prefix.prefix_sharing_sft_trainer`).
        tokenizer: the model's tokenizer (with a chat template); TRL tokenizes the dataset with it.
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        The trainer; ``trainer.train_dataset`` holds the tokenized rows with ``labels`` (-100 on the prompt).
    """
    if cfg.group_by_date:
        trainer_class = prefix.prefix_sharing_sft_trainer(cfg.share_prefix)
        args = copy.copy(cfg.sft)
        args.train_sampling_strategy = "sequential"  # the order of prefix.group_by_key
        lengths = [prefix.message_chars(row) for row in dataset]
        dataset = prefix.group_by_key(
            dataset, "anchor_date", cfg.sft.per_device_train_batch_size, cfg.seed, lengths
        )
    else:
        from trl import SFTTrainer as trainer_class

        args = cfg.sft
    return trainer_class(
        model=common.resolve_model(cfg.model),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=cfg.lora,
        callbacks=callbacks,
    )


def train_sft(cfg: SFTRunConfig, examples_df: Any = None, preset_pool: Any = None) -> dict[str, Any]:
    """Supervised fine-tuning on the next-advertiser label (paper 3.4.1).

    Args:
        cfg: what to train on, how, and where to write; see :class:`SFTRunConfig`.
        examples_df: examples table (pandas) to use instead of reading ``cfg.examples``.
        preset_pool: preset pool (list, or {anchor date: list}) for ``examples_df``.

    Returns:
        Metrics: train_loss_first/last, steps, seconds, s_per_step, examples_per_s, tokens (and per second),
        dataset length statistics, parameter counts, device and the saved model folder; also written with
        the config and TRL's log history to ``output_dir/train_summary.json``.
    """

    model_path = common.resolve_model(cfg.model)
    tokenizer = common.load_tokenizer(model_path, padding_side="right")
    dataset, data_stats = prepare_sft_data(cfg, tokenizer, examples_df, preset_pool)
    log.info(
        "SFT on %d examples (%s) from %s, template %s", len(dataset), data_stats, model_path, cfg.template
    )
    timer = common.step_timer("sft")
    trainer = build_sft_trainer(cfg, dataset, tokenizer, callbacks=[timer])
    common.quiet_progress(trainer)
    result, seconds, compact = common.run_trainer(trainer, cfg)
    history = trainer.state.log_history
    losses = common.history_values(history, "loss")
    tokens = common.history_values(history, "num_tokens")
    steps = trainer.state.global_step
    step_time = sum(timer.step_seconds) or seconds
    seen = steps * cfg.sft.per_device_train_batch_size * cfg.sft.gradient_accumulation_steps
    metrics: dict[str, Any] = {
        **common.run_metrics("sft", cfg, model_path, compact, dataset, data_stats),
        **common.timing(timer, steps, seconds),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "train_loss_mean": result.training_loss,
        "mean_token_accuracy_last": (common.history_values(history, "mean_token_accuracy") or [None])[-1],
        "examples_seen": seen,
        "examples_per_s": round(seen / step_time, 3) if step_time else None,
        "tokens": int(tokens[-1]) if tokens else None,
        "tokens_per_s": round(tokens[-1] / step_time, 1) if tokens and step_time else None,
    }
    common.finish_run(trainer, tokenizer, cfg, metrics, history)
    log.info(
        "SFT done: %d steps in %.1f s, loss %s -> %s",
        steps,
        seconds,
        metrics["train_loss_first"],
        metrics["train_loss_last"],
    )
    return metrics
