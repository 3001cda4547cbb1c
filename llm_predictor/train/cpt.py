"""Continued pre-training with semantic-ID tokens (paper 3.5, phases 1 and 2).

* :func:`add_sid_tokens` adds one token per SID level x code (``llm_predictor.sid.tokens.sid_tokens``) to the
  tokenizer and the model; the new embedding rows start at the mean of the existing rows.
* Phase 1 (:func:`train_cpt` with ``phase=1``): only the SID rows of the token embeddings train. Every other
  parameter has ``requires_grad=False``; the embedding matrix (SmolLM2 ties it to the LM head, so it is one
  parameter) keeps ``requires_grad=True`` with a gradient hook that zeroes the gradient of every non-SID row,
  and weight decay is 0, so the text-token rows stay bit-identical (checked after training and reported as
  ``frozen_rows_max_abs_change``). An untied LM head gets the same treatment (its SID rows train).
* Phase 2 (``phase=2``): every weight trains on a mix of SID-bearing recommendation text and general text.

Training text: :func:`llm_predictor.train.cpt_corpus.cpt_texts`.

Phase 3 is the task SFT/GRPO on SID-aware prompts (``sft_sid``, ``grpo_sid``) from the saved folder: it is a
plain Hugging Face model folder whose tokenizer carries the SID tokens, and ``llm_predictor.train.sft`` /
``llm_predictor.train.grpo`` load the tokenizer from the model folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_predictor.sid.artifacts import load_sid_tokens
from llm_predictor.train.common import (
    load_tokenizer,
    quiet_progress,
    resolve_model,
    step_timer,
    timing,
    write_summary,
)
from llm_predictor.train.config import PHASE1_LR, PHASE2_LR, CPTConfig, device_kwargs
from llm_predictor.train.cpt_corpus import cpt_texts

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Tokens and freezing
# --------------------------------------------------------------------------------------------------


def _embedding_params(model: Any) -> list[Any]:
    """The input embedding weight and, when it is a different tensor, the output (LM head) weight."""
    params = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not params[0]:
        params.append(out.weight)
    return params


def add_sid_tokens(
    model: Any, tokenizer: Any, tokens: Sequence[str], noise_std: float = 0.0, seed: int = 0
) -> list[int]:
    """Add the SID ``tokens`` missing from ``tokenizer`` to it and to ``model``; return the ids of all ``tokens``.

    The embedding matrix (and an untied LM head) is resized to hold the new ids; the new rows are set to
    the mean of the other rows of the original matrix (plus ``noise_std`` Gaussian noise). Tokens already in
    the tokenizer keep their rows, so calling it again (phase 2 on a phase-1 model) changes nothing.
    """
    import torch

    vocab = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(tokens) if t not in vocab]
    if new:
        tokenizer.add_tokens(new)  # plain added tokens: matched before BPE, kept by skip_special_tokens
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    new_ids = tokenizer.convert_tokens_to_ids(new) if new else []
    old_rows = model.get_input_embeddings().weight.shape[0]
    need = max([old_rows, *(i + 1 for i in ids)])
    if need > old_rows:
        model.resize_token_embeddings(need, mean_resizing=False)
    if new_ids:
        gen = torch.Generator().manual_seed(seed)
        new_idx = torch.tensor(new_ids)
        keep = torch.ones(old_rows, dtype=torch.bool)
        keep[new_idx[new_idx < old_rows]] = False
        with torch.no_grad():
            for w in _embedding_params(model):
                mean = w[:old_rows][keep].mean(dim=0)
                rows = mean.expand(len(new_ids), -1).clone()
                if noise_std > 0:
                    rows += torch.randn(rows.shape, generator=gen) * noise_std
                w[new_idx] = rows.to(w.dtype)
    log.info(
        "SID tokens: %d requested, %d added; embedding rows %d -> %d",
        len(tokens),
        len(new),
        old_rows,
        model.get_input_embeddings().weight.shape[0],
    )
    return list(ids)


def freeze_all_but_rows(model: Any, row_ids: Sequence[int]) -> list[Any]:
    """Phase-1 freezing: only the given rows of the token embeddings (and of an untied LM head) can change.

    Sets ``requires_grad=False`` on every parameter except the embedding weight(s), whose gradients are
    multiplied by a 0/1 row mask in a hook. Use weight decay 0 with it (decoupled decay would shrink the
    masked rows). Returns the hook handles (``handle.remove()`` undoes the masking).
    """
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    handles = []
    for w in _embedding_params(model):
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        mask[list(row_ids)] = 1.0
        w.requires_grad_(True)
        handles.append(w.register_hook(lambda g, m=mask: g * m))
    return handles


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def train_cpt(cfg: CPTConfig) -> dict[str, Any]:
    """Run CPT phase ``cfg.phase`` (1 or 2) and save a Hugging Face model folder with the SID tokenizer.

    Args:
        cfg: model, SIDs, examples, phase and optimisation; see :class:`CPTConfig`.

    Returns:
        Metrics (loss first/last, steps, seconds, text counts, SID token counts, trainable parameters and,
        in phase 1, ``frozen_rows_max_abs_change`` (0.0 when the text-token rows are untouched) and
        ``sid_rows_mean_abs_change``); also written with the config and the log history to
        ``output_dir/train_summary.json``.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    if cfg.phase not in (1, 2):
        raise ValueError(f"phase must be 1 or 2, got {cfg.phase}")
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        model_path = resolve_model(cfg.model)
        tokenizer = load_tokenizer(model_path, padding_side="right")
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model.config.use_cache = False
        tokens = load_sid_tokens(cfg.sids)
        vocab_before = len(tokenizer)
        sid_ids = add_sid_tokens(model, tokenizer, tokens, cfg.init_noise_std, cfg.seed)
        texts, counts = cpt_texts(cfg)
        ds = Dataset.from_dict({"text": texts}).map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=cfg.max_length),
            batched=True,
            remove_columns=["text"],
        )
        n_tokens = sum(len(x) for x in ds["input_ids"])
        handles: list[Any] = []
        snapshot: list[Any] = []
        weight_decay = cfg.weight_decay
        if cfg.phase == 1:
            handles = freeze_all_but_rows(model, sid_ids)
            weight_decay = 0.0
            if cfg.verify_frozen:
                snapshot = [w.detach().clone() for w in _embedding_params(model)]
        else:
            for p in model.parameters():
                p.requires_grad_(True)
        lr = (
            cfg.learning_rate
            if cfg.learning_rate is not None
            else (PHASE1_LR if cfg.phase == 1 else PHASE2_LR)
        )
        args = TrainingArguments(
            output_dir=str(cfg.output_dir),
            max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
            num_train_epochs=cfg.num_train_epochs,
            per_device_train_batch_size=cfg.per_device_train_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            learning_rate=lr,
            lr_scheduler_type=cfg.lr_scheduler_type,
            warmup_steps=cfg.warmup_steps,
            weight_decay=weight_decay,
            max_grad_norm=cfg.max_grad_norm,
            seed=cfg.seed,
            data_seed=cfg.seed,
            logging_steps=cfg.logging_steps,
            logging_strategy="steps",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=cfg.disable_tqdm,
            **device_kwargs(cfg.bf16),
        )
        timer = step_timer(f"cpt{cfg.phase}")
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=ds,
            processing_class=tokenizer,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
            callbacks=[timer],
        )
        quiet_progress(trainer)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        for h in handles:
            h.remove()
        history = trainer.state.log_history
        losses = [h["loss"] for h in history if h.get("loss") is not None]
        metrics: dict[str, Any] = {
            "stage": f"cpt{cfg.phase}",
            "model": model_path,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            **counts,
            "train_tokens": n_tokens,
            "sid_tokens": len(tokens),
            "sid_tokens_added": len(tokenizer) - vocab_before,
            "sid_token_id_range": [min(sid_ids), max(sid_ids)],
            "vocab_size": len(tokenizer),
            "tied_embeddings": len(_embedding_params(model)) == 1,
            "learning_rate": lr,
            "params_total": sum(p.numel() for p in model.parameters()),
            "params_trainable": trainable,
            **timing(timer, trainer.state.global_step, seconds),
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "train_loss_mean": result.training_loss,
        }
        if snapshot:
            metrics.update(_row_changes(_embedding_params(model), snapshot, sid_ids))
        if cfg.save:
            out = Path(cfg.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            for p in model.parameters():
                p.requires_grad_(True)
            model.config.use_cache = True
            model.save_pretrained(str(out))
            tokenizer.save_pretrained(str(out))
            metrics["model_dir"] = str(out)
        write_summary(Path(cfg.output_dir), cfg, metrics, history)
        log.info(
            "CPT phase %d: %d steps in %.1f s, loss %s -> %s",
            cfg.phase,
            trainer.state.global_step,
            seconds,
            metrics["train_loss_first"],
            metrics["train_loss_last"],
        )
        return metrics
    finally:
        torch.set_num_threads(old_threads)


def _row_changes(params: list[Any], before: list[Any], sid_ids: Sequence[int]) -> dict[str, float]:
    """Largest change of a non-SID row and mean change of the SID rows, over the embedding weight(s)."""
    import torch

    frozen_max, sid_mean = 0.0, 0.0
    for w, b in zip(params, before, strict=True):
        mask = torch.ones(w.shape[0], dtype=torch.bool)
        mask[list(sid_ids)] = False
        diff = (w.detach() - b).abs()
        frozen_max = max(frozen_max, float(diff[mask].max()) if mask.any() else 0.0)
        sid_mean = max(sid_mean, float(diff[~mask].mean()))
    return {"frozen_rows_max_abs_change": frozen_max, "sid_rows_mean_abs_change": sid_mean}
