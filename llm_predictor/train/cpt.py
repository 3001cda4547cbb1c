"""Continued pre-training with semantic-ID tokens (paper 3.5, phases 1 and 2).

* :func:`add_sid_tokens` adds one token per SID level x code (``llm_predictor.sid.sid_tokens``) to the
  tokenizer and the model; the new embedding rows start at the mean of the existing rows.
* Phase 1 (:func:`train_cpt` with ``phase=1``): only the SID rows of the token embeddings train. Every other
  parameter has ``requires_grad=False``; the embedding matrix (SmolLM2 ties it to the LM head, so it is one
  parameter) keeps ``requires_grad=True`` with a gradient hook that zeroes the gradient of every non-SID row,
  and weight decay is 0, so the text-token rows stay bit-identical (checked after training and reported as
  ``frozen_rows_max_abs_change``). An untied LM head gets the same treatment (its SID rows train).
* Phase 2 (``phase=2``): every weight trains on a mix of SID-bearing recommendation text and general text.

Training text (``cpt_texts``), built from the SID map and compiled examples with ``sid_sequences``
(``llm_predictor.sid.attach_sid_sequences``):

* item alignment: "Item <a_1><b_2><c_3><d_0>: <title>. Category: .... Brand: ...." and the reverse;
* user sequences: "A user converted with <sid> <sid> .... Next item: <sid> (<advertiser>)." from the
  user's SID history (chronological), and, for labelled rows of the training split, "... Next advertiser:
  <label advertiser>.";
* general text (phase 2 only): the catalogue's item descriptions as plain sentences without SIDs. This is
  our stand-in for the paper's "substantial share of general-domain data": no general-domain corpus is
  available offline here, so it guards the text-token embeddings less than a real corpus would.

Phase 3 is the task SFT/GRPO on SID-aware prompts (``sft_sid``, ``grpo_sid``) from the saved folder: it is a
plain Hugging Face model folder whose tokenizer carries the SID tokens, and ``llm_predictor.train.trainers`` loads the
tokenizer from the model folder.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llm_predictor.sid import load_sid_map, load_sid_tokens
from llm_predictor.train.trainers import (
    _device_kwargs,
    _step_timer,
    _timing,
    _write_summary,
    load_tokenizer,
    resolve_model,
)

log = logging.getLogger(__name__)

PHASE1_LR = 1e-3  # embeddings-only training tolerates (and needs) a larger step
PHASE2_LR = 2e-5  # full-parameter training, as the SFT default


@dataclass
class CPTConfig:
    """One continued pre-training phase (paper 3.5)."""

    phase: int = 1  # 1: only the SID token embedding rows train; 2: every weight trains
    model: str | Path | None = (
        None  # HF model folder (phase 2: the phase-1 output); None = ensure_base_model()
    )
    sids: Path = Path("runs/sid")  # build_sids output folder (sid_map.parquet, sid_summary.json)
    examples: Path | None = None  # examples with sid_sequences (attach output); None = item texts only
    output_dir: Path = Path("models/cpt1")  # where the model, tokenizer and train_summary.json go
    split: str | None = "train"  # examples split whose sequences and labels make texts; None = all
    max_history: int = 10  # history SIDs per user-sequence sentence (oldest dropped)
    item_texts: bool = True  # include the item <-> SID alignment sentences
    general_fraction: float = 0.3  # phase 2: share of general (SID-free) texts in the training mix
    max_texts: int | None = 20000  # cap on recommendation texts (a seeded sample); None = all
    max_length: int = 128  # tokens per training text (longer ones are truncated)
    max_steps: int = 100  # optimizer steps; <= 0 = run num_train_epochs instead
    num_train_epochs: float = 1.0  # passes over the texts when max_steps <= 0
    per_device_train_batch_size: int = 8  # texts per forward/backward pass
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    learning_rate: float | None = None  # peak AdamW learning rate; None = 1e-3 (phase 1) or 2e-5 (phase 2)
    lr_scheduler_type: str = "linear"  # transformers scheduler name
    warmup_steps: int = 0  # linear warm-up steps
    weight_decay: float = (
        0.0  # AdamW weight decay in phase 2 (phase 1 always uses 0: decay would move frozen rows)
    )
    max_grad_norm: float = 1.0  # gradient clipping norm
    init_noise_std: float = (
        0.0  # std of noise added to the mean-initialised new SID rows (0 = exactly the mean)
    )
    seed: int = 42  # seed of text sampling, data order and initialisation
    logging_steps: int = 1  # optimizer steps between log records
    bf16: bool = False  # bf16 mixed precision; only honoured on a GPU
    threads: int | None = None  # torch CPU threads during training; None = leave torch's setting
    verify_frozen: bool = True  # phase 1: compare the non-SID embedding rows before and after training
    save: bool = True  # save the model and tokenizer into output_dir
    disable_tqdm: bool | None = None  # None = the Trainer's default progress bar


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
# Texts
# --------------------------------------------------------------------------------------------------


def _clean(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return " ".join(str(value).split())


def item_alignment_texts(sid_map: pd.DataFrame) -> list[str]:
    """Two sentences per item tying its SID to its text: "Item <sid>: <text>." and "<text>. Semantic ID: <sid>."."""
    out = []
    for sid, text in zip(sid_map["sid"], sid_map["text"], strict=True):
        text = _clean(text).rstrip(".")
        out += [f"Item {sid}: {text}.", f"{text}. Semantic ID: {sid}."]
    return out


def general_texts(sid_map: pd.DataFrame) -> list[str]:
    """SID-free sentences about the catalogue (the stand-in for general-domain text; see the module doc)."""
    out = []
    for title, brand, cat in zip(
        sid_map["title"], sid_map["advertiser_name"], sid_map["category"], strict=True
    ):
        title, brand, cat = _clean(title).rstrip("."), _clean(brand), _clean(cat).replace(" > ", ", ")
        if not title:
            continue
        sentence = (
            f"{title}"
            + (f" is sold by {brand}" if brand else "")
            + (f" in the category {cat}" if cat else "")
        )
        out.append(sentence + ".")
    return out


def sequence_texts(examples: pd.DataFrame, sid_map: pd.DataFrame, max_history: int = 10) -> list[str]:
    """User-history sentences from the ``sid_sequences`` column (newest first in the table).

    "A user converted with <h1> <h2> .... Next item: <sid> (<advertiser>)." from a row with at least two SIDs
    (the newest one is the target), and "A user converted with .... Next advertiser: <label>." for labelled
    rows. Duplicates are removed, order kept.
    """
    adv = dict(zip(sid_map["sid"], sid_map["advertiser_name"], strict=True))
    out: list[str] = []
    has_label = "label_advertiser_name" in examples.columns
    for row in examples.itertuples(index=False):
        seq = getattr(row, "sid_sequences", None)
        seq = [] if seq is None or (isinstance(seq, float) and seq != seq) else list(seq)
        chrono = [s for s in reversed(seq) if isinstance(s, str)]
        if len(chrono) >= 2:
            hist, nxt = chrono[:-1][-max_history:], chrono[-1]
            name = _clean(adv.get(nxt, ""))
            out.append(
                f"A user converted with {' '.join(hist)}. Next item: {nxt}" + (f" ({name})." if name else ".")
            )
        label = _clean(getattr(row, "label_advertiser_name", None)) if has_label else ""
        if chrono and label:
            out.append(f"A user converted with {' '.join(chrono[-max_history:])}. Next advertiser: {label}.")
    return list(dict.fromkeys(out))


def cpt_texts(cfg: CPTConfig) -> tuple[list[str], dict[str, int]]:
    """The shuffled training texts of ``cfg.phase`` and their counts by kind."""
    rng = random.Random(cfg.seed)
    sid_map = load_sid_map(cfg.sids)
    rec: list[str] = item_alignment_texts(sid_map) if cfg.item_texts else []
    n_items = len(rec)
    n_seq = 0
    if cfg.examples is not None:
        from llm_predictor.data.compile import load_examples

        ex = load_examples(Path(cfg.examples))
        if "sid_sequences" not in ex.columns:
            raise ValueError(f"{cfg.examples} has no sid_sequences column: run `adprior sid attach` first")
        if cfg.split is not None:
            ex = ex[ex["split"] == cfg.split]
        seq = sequence_texts(ex, sid_map, cfg.max_history)
        n_seq = len(seq)
        rec += seq
    if not rec:
        raise ValueError("no CPT texts: enable item_texts or give examples with sid_sequences")
    if cfg.max_texts is not None and len(rec) > cfg.max_texts:
        rec = rng.sample(rec, cfg.max_texts)
    texts = list(rec)
    n_general = 0
    if cfg.phase == 2 and cfg.general_fraction > 0:
        pool = general_texts(sid_map)
        want = round(len(rec) * cfg.general_fraction / max(1e-9, 1.0 - cfg.general_fraction))
        general = rng.sample(pool, want) if want <= len(pool) else [rng.choice(pool) for _ in range(want)]
        n_general = len(general)
        texts += general
    rng.shuffle(texts)
    return texts, {
        "item_texts": n_items,
        "sequence_texts": n_seq,
        "recommendation_texts": len(rec),
        "general_texts": n_general,
        "texts": len(texts),
    }


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
            **_device_kwargs(cfg.bf16),
        )
        timer = _step_timer(f"cpt{cfg.phase}")
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=ds,
            processing_class=tokenizer,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
            callbacks=[timer],
        )
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
            **_timing(timer, trainer.state.global_step, seconds),
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
        _write_summary(Path(cfg.output_dir), cfg, metrics, history)
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
