"""Post-training of the advertiser predictor (paper 3.4): SFT, then GRPO, with TRL.

* :func:`train_sft` - ``trl.SFTTrainer`` on the single-advertiser prompt (``sft_text``, paper A.1) or the
  20-advertiser variant (``sft_text_20``), conversational prompt-completion data with the loss on the
  completion only (``SFTConfig.completion_only_loss=True``); the tokenizer's chat template is applied by TRL.
* :func:`train_grpo` - ``trl.GRPOTrainer`` on the inference prompt (``grpo_text``, A.3) with the reward of
  paper eq. 1-5 (:func:`llm_predictor.train.rewards.paper_reward`).

Both run on the GPU when ``torch.cuda.is_available()``, else on the CPU (``use_cpu=True``, fp32: bf16 on an
AVX2 CPU is ~12x slower, see stack-notes "TRL 1.16 on CPU"). With ``lora=True`` the adapter is merged into
the base weights before saving, so every stage reads and writes a plain Hugging Face model folder. Each run
writes ``train_summary.json`` (config, metrics, TRL's log history) into its output folder.

Prompts are long (SmolLM2: ~700 tokens of shared prefix for grpo_text + a per-user part): ``budget_tokens``
caps the per-user part, and rows still longer than ``max_length`` (SFT, prompt + completion) or
``max_prompt_length`` (GRPO, prompt) are dropped with a warning rather than truncated (TRL would cut the SFT
completion off the end; TRL 1.16 GRPO has no prompt truncation at all).

On CPU, TRL 1.16's fused LM head scores every prompt position over the whole vocabulary; the runs patch that
switch for their duration so that only labelled (completion) positions are scored (:func:`score_labelled_only`,
identical values, an order of magnitude faster GRPO steps with long prompts).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from llm_predictor.data.prompts import PromptBudget, hf_token_counter
from llm_predictor.train.rewards import RewardConfig, make_reward

log = logging.getLogger(__name__)

# All linear layers of a Llama-style block (SmolLM2, Llama, Qwen, Mistral use these names).
DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
SUMMARY_FILE = "train_summary.json"


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------


@dataclass
class SFTRunConfig:
    """One SFT run (paper 3.4.1)."""

    examples: Path | None = None  # compiled examples folder (compile output: examples/, preset_pool/)
    output_dir: Path = Path("models/sft")  # where the trained model and train_summary.json go
    model: str | Path | None = (
        None  # HF model folder to start from; None = ensure_base_model() (SmolLM2-135M)
    )
    anchor_dates: list[date] | None = None  # anchor dates to train on; None = all compiled dates
    split: str | None = "train"  # examples split used ('train' | 'eval'); None = both
    v0_only: bool = False  # True: only V0 users (rich matched and attributed histories)
    template: str = "sft_text"  # 'sft_text' (1 advertiser, paper A.1) | 'sft_text_20' | 'sft_sid'
    popular: list[str] | None = None  # sft_text_20 target filler after label + active; None = preset pool
    budget_tokens: int = 400  # token budget of the per-user prompt part (PromptBudget.max_user_tokens)
    max_length: int | None = 1536  # longest prompt+completion in tokens; longer rows are dropped
    max_steps: int = 100  # optimizer steps; <= 0 = run num_train_epochs instead
    num_train_epochs: float = 1.0  # passes over the data when max_steps <= 0
    per_device_train_batch_size: int = 4  # sequences per forward/backward pass
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    learning_rate: float = 2e-5  # peak AdamW learning rate (LoRA usually wants ~1e-4 to 2e-4)
    lr_scheduler_type: str = "linear"  # transformers scheduler name ('linear', 'cosine', 'constant', ...)
    warmup_steps: int = 0  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping norm
    lora: bool = False  # train a LoRA adapter instead of all weights (merged before saving)
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.0  # dropout on the LoRA input; 0 skips it (on CPU it cost ~15% of a SmolLM2 step)
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS)
    )  # wrapped layers
    max_train_examples: int | None = None  # cap on labelled rows (a seeded sample); None = all
    seed: int = 42  # seed of sampling, data order and initialisation
    logging_steps: int = 1  # optimizer steps between log records
    gradient_checkpointing: bool = False  # recompute activations in backward (less memory, ~20% slower)
    bf16: bool = False  # bf16 mixed precision; only honoured on a GPU (never on CPU)
    dataloader_num_workers: int = 0  # data loader worker processes
    cpu_score_labelled_only: bool = True  # on CPU, score only positions with labels (see score_labelled_only)
    save: bool = True  # save the trained (merged) model and tokenizer into output_dir
    disable_tqdm: bool | None = None  # None = the Trainer's default progress bar
    save_steps: int = 0  # > 0: a resumable checkpoint (weights, optimizer, scheduler, RNG) every N steps
    resume: bool = False  # continue from the newest output_dir/checkpoint-N (same config); none: start fresh


@dataclass
class GRPORunConfig:
    """One GRPO run (paper 3.4.2): 20 advertisers + 5 interests, reward of eq. 1-5."""

    examples: Path | None = None  # compiled examples folder (compile output: examples/, preset_pool/)
    output_dir: Path = Path("models/grpo")  # where the trained model and train_summary.json go
    model: str | Path | None = None  # HF model folder, typically the SFT output; None = ensure_base_model()
    anchor_dates: list[date] | None = None  # anchor dates to train on; None = all compiled dates
    split: str | None = "train"  # examples split used ('train' | 'eval'); None = both
    v0_only: bool = False  # True: only V0 users
    template: str = "grpo_text"  # 'grpo_text' (paper A.3, the inference format) | 'grpo_sid' | ...
    budget_tokens: int = 400  # token budget of the per-user prompt part
    max_prompt_length: int | None = 1536  # longest chat-templated prompt in tokens; longer rows are dropped
    max_completion_length: int = 256  # generated tokens per completion (20 names + 5 interests ~ 150-250)
    max_steps: int = 50  # optimizer steps; <= 0 = run num_train_epochs instead
    num_train_epochs: float = 1.0  # passes over the data when max_steps <= 0
    batch_size: int = 4  # distinct prompts per optimizer step
    num_generations: int = 4  # completions sampled per prompt (the GRPO group); >= 2
    micro_batch_size: int | None = (
        None  # completions per forward/backward; None = batch_size * num_generations
    )
    learning_rate: float = 1e-6  # peak AdamW learning rate (TRL's GRPO default)
    lr_scheduler_type: str = "linear"  # transformers scheduler name
    warmup_steps: int = 0  # linear warm-up steps
    max_grad_norm: float = 1.0  # gradient clipping norm
    beta: float = 0.0  # KL coefficient; 0 = no reference model (TRL's default)
    loss_type: str = "dapo"  # TRL GRPO loss aggregation ('dapo' default, 'grpo', 'dr_grpo', 'bnpo', ...)
    temperature: float = 1.0  # sampling temperature of the rollouts
    top_p: float = 1.0  # nucleus sampling of the rollouts
    reward: RewardConfig = field(default_factory=RewardConfig)  # eq. 1-5 parameters (paper defaults)
    lora: bool = False  # train a LoRA adapter instead of all weights (merged before saving)
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator
    lora_dropout: float = 0.0  # dropout on the LoRA input; 0 skips it (on CPU it cost ~15% of a SmolLM2 step)
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS)
    )  # wrapped layers
    max_train_examples: int | None = None  # cap on labelled rows (a seeded sample); None = all
    seed: int = 42  # seed of sampling, data order, generation and initialisation
    logging_steps: int = 1  # optimizer steps between log records
    gradient_checkpointing: bool = False  # recompute activations in backward
    bf16: bool = False  # bf16 mixed precision; only honoured on a GPU
    log_completions: bool = (
        False  # TRL prints sample completions and writes them under output_dir/completions
    )
    cpu_score_labelled_only: bool = True  # on CPU, score only completion positions (see score_labelled_only)
    save: bool = True  # save the trained (merged) model and tokenizer into output_dir
    disable_tqdm: bool | None = None  # None = the Trainer's default progress bar
    save_steps: int = 0  # > 0: a resumable checkpoint (weights, optimizer, scheduler, RNG) every N steps
    resume: bool = False  # continue from the newest output_dir/checkpoint-N (same config); none: start fresh


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def resolve_model(model: str | Path | None) -> str:
    """The model folder to load: ``model``, or the converted SmolLM2 base model when None."""
    if model is not None:
        return str(model)
    from llm_predictor.base_model import ensure_base_model

    return str(ensure_base_model())


def load_tokenizer(model_path: str, padding_side: str = "right") -> Any:
    """The model's tokenizer with a pad token (its EOS when it has none) and the given padding side."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"the tokenizer of {model_path} has no chat template; the prompts are chat messages")
    return tok


def load_run_examples(
    examples: Path,
    anchor_dates: list[date] | None = None,
    split: str | None = "train",
    v0_only: bool = False,
    max_examples: int | None = None,
    seed: int = 42,
) -> tuple[Any, dict[str, list[str]]]:
    """Labelled example rows and the preset pools of their dates from a compiled examples folder.

    Args:
        examples: the compile output folder (``examples/`` and ``preset_pool/`` below it).
        anchor_dates: dates to keep; None = all.
        split: 'train' | 'eval' | None (both).
        v0_only: keep only V0 users.
        max_examples: a seeded sample of at most this many labelled rows; None = all.
        seed: the sampling seed.

    Returns:
        (pandas DataFrame of labelled rows sorted by anchor date and user, {ISO date: preset pool names}).
    """
    from llm_predictor.data.compile import load_examples, load_preset_pool

    df = load_examples(Path(examples))
    if anchor_dates is not None:
        wanted = {d.isoformat() if isinstance(d, date) else str(d) for d in anchor_dates}
        df = df[df["anchor_date"].map(lambda d: d.isoformat()).isin(wanted)]
    if split is not None:
        df = df[df["split"] == split]
    if v0_only:
        df = df[df["in_v0"].fillna(False).astype(bool)]
    names = df["label_advertiser_name"]
    df = df[names.notna() & (names.astype(str).str.strip() != "")]
    df = df.sort_values(["anchor_date", "user_id"]).reset_index(drop=True)
    if max_examples is not None and len(df) > max_examples:
        df = df.sample(n=max_examples, random_state=seed).sort_values(["anchor_date", "user_id"])
        df = df.reset_index(drop=True)
    pools = {d.isoformat(): load_preset_pool(Path(examples), d) for d in sorted(set(df["anchor_date"]))}
    log.info("loaded %d labelled examples over %d anchor date(s) from %s", len(df), len(pools), examples)
    return df, pools


def _device_kwargs(bf16: bool) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {"use_cpu": not cuda, "bf16": bool(bf16 and cuda), "fp16": False, "dataloader_pin_memory": cuda}


@contextmanager
def score_labelled_only(enabled: bool = True) -> Iterator[bool]:
    """Make TRL's fused LM head score only the positions that carry a label on CPU, as it does on CUDA.

    TRL 1.16 computes per-token log-probabilities with a chunked "fused LM head" (``trl.trainer.utils.
    add_fused_lm_head``). On devices with Triton (CUDA, XPU) it projects only the positions whose label is
    not -100; elsewhere, to keep tile shapes static for compilers such as Neuron, it projects *every*
    position of prompt + completion over the whole vocabulary and masks afterwards. On CPU that makes the
    LM head work scale with the prompt (~600-1100 tokens here) instead of the completion (5-250 tokens):
    a GRPO step of the 2-layer test model took 5.9 s instead of 0.4 s. Inside this context the choice
    returns "compact" for CPU tensors; the values are identical (only masked positions are skipped) and the
    tile computation still runs in plain torch. Yields whether the patch is active (False when disabled
    or when the installed TRL has no such switch).
    """
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:  # pragma: no cover - trl is a dependency
        enabled = False
    original = getattr(trl_utils, "_use_triton", None) if enabled else None
    if original is None:
        yield False
        return

    def use_compact(device: Any) -> bool:
        return getattr(device, "type", None) == "cpu" or original(device)

    trl_utils._use_triton = use_compact
    try:
        yield True
    finally:
        trl_utils._use_triton = original


def _lora_config(r: int, alpha: int, dropout: float, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _common_args(cfg: SFTRunConfig | GRPORunConfig) -> dict[str, Any]:
    return {
        "output_dir": str(cfg.output_dir),
        "max_steps": cfg.max_steps if cfg.max_steps > 0 else -1,
        "num_train_epochs": cfg.num_train_epochs,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "warmup_steps": cfg.warmup_steps,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "logging_steps": cfg.logging_steps,
        "logging_strategy": "steps",
        # the final model is saved (merged) by us; checkpoints only to resume a run that spans sittings
        "save_strategy": "steps" if cfg.save_steps > 0 else "no",
        **({"save_steps": cfg.save_steps, "save_total_limit": 2} if cfg.save_steps > 0 else {}),
        "eval_strategy": "no",
        "report_to": "none",
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "disable_tqdm": cfg.disable_tqdm,
        **_device_kwargs(cfg.bf16),
    }


def _step_timer(name: str) -> Any:
    """A Trainer callback recording the wall time of every optimizer step (generation included for GRPO)
    and passing TRL's log records to ``logging``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.step_seconds: list[float] = []
            self._t0: float | None = None

        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if self._t0 is not None:
                self.step_seconds.append(time.perf_counter() - self._t0)
                self._t0 = None

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs:
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()}
                log.info("%s step %d/%d: %s", name, state.global_step, state.max_steps, shown)

    return StepTimer()


def _save(trainer: Any, tokenizer: Any, out: Path) -> dict[str, Any]:
    """Save the trained model (LoRA merged into the base weights) and tokenizer as a plain HF folder."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    merged = False
    try:
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model = model.merge_and_unload()
            merged = True
    except ImportError:  # pragma: no cover - peft is a dependency
        pass
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    log.info("saved %smodel to %s", "merged LoRA " if merged else "", out)
    return {"model_dir": str(out), "lora_merged": merged}


def _param_counts(trainer: Any) -> dict[str, int]:
    params = list(trainer.model.parameters())
    return {
        "params_total": sum(p.numel() for p in params),
        "params_trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def _timing(timer: Any, steps: int, seconds: float) -> dict[str, Any]:
    st = timer.step_seconds
    return {
        "steps": steps,
        "seconds": round(seconds, 3),
        "step_seconds": [round(s, 3) for s in st],
        "s_per_step": round(sum(st) / len(st), 3) if st else None,
        "s_per_step_after_first": round(sum(st[1:]) / len(st[1:]), 3) if len(st) > 1 else None,
    }


def _history_values(history: list[dict[str, Any]], key: str) -> list[float]:
    return [h[key] for h in history if key in h and h[key] is not None]


def _write_summary(out: Path, cfg: Any, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": shlex.join(sys.argv),
        "config": asdict(cfg),
        "metrics": metrics,
        "log_history": history,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(payload, indent=2, default=str))


# --------------------------------------------------------------------------------------------------
# SFT
# --------------------------------------------------------------------------------------------------


def prepare_sft_data(
    cfg: SFTRunConfig, tokenizer: Any, examples_df: Any = None, preset_pool: Any = None
) -> tuple[Any, dict[str, Any]]:
    """The SFT dataset of ``cfg`` (over-long rows dropped) and its length statistics.

    Args:
        cfg: the run config (examples folder, dates, split, template, budget, max_length).
        tokenizer: the model's tokenizer (counts the prompt budget and lengths).
        examples_df: examples table to use instead of reading ``cfg.examples``.
        preset_pool: preset pool (list or {date: list}) to use with ``examples_df``.

    Returns:
        (``datasets.Dataset`` in conversational prompt-completion format, statistics dict).
    """
    from llm_predictor.train.datasets import drop_long, sft_dataset

    if examples_df is None:
        if cfg.examples is None:
            raise ValueError("SFTRunConfig.examples is not set")
        examples_df, preset_pool = load_run_examples(
            cfg.examples, cfg.anchor_dates, cfg.split, cfg.v0_only, cfg.max_train_examples, cfg.seed
        )
    budget = PromptBudget(max_user_tokens=cfg.budget_tokens, count_tokens=hf_token_counter(tokenizer))
    ds = sft_dataset(examples_df, preset_pool, cfg.template, budget, cfg.popular)
    if cfg.max_train_examples is not None and len(ds) > cfg.max_train_examples:
        ds = ds.shuffle(seed=cfg.seed).select(range(cfg.max_train_examples))
    ds, stats = drop_long(ds, tokenizer, cfg.max_length, "total_tokens")
    if len(ds) == 0:
        raise ValueError(f"no SFT examples left (stats: {stats})")
    return ds, stats


def build_sft_trainer(
    cfg: SFTRunConfig, dataset: Any, tokenizer: Any, callbacks: list[Any] | None = None
) -> Any:
    """A ``trl.SFTTrainer`` for ``cfg`` on a prepared dataset (see :func:`prepare_sft_data`).

    Args:
        cfg: the run config.
        dataset: conversational prompt-completion ``Dataset``.
        tokenizer: the model's tokenizer (with a chat template); TRL tokenizes the dataset with it.
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        The trainer; ``trainer.train_dataset`` holds the tokenized rows with ``labels`` (-100 on the prompt).
    """
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **_common_args(cfg),
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        dataloader_num_workers=cfg.dataloader_num_workers,
        max_length=cfg.max_length,
        completion_only_loss=True,  # labels -100 on the prompt; prompt-completion data only
        assistant_only_loss=False,  # SmolLM2's template has no {% generation %} markers; not needed here
        packing=False,
    )
    peft_config = (
        _lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        if cfg.lora
        else None
    )
    return SFTTrainer(
        model=resolve_model(cfg.model),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )


def resume_checkpoint(cfg: SFTRunConfig | GRPORunConfig) -> str | None:
    """The checkpoint ``cfg.resume`` continues from: the newest ``output_dir/checkpoint-N`` (None: start fresh)."""
    if not cfg.resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(cfg.output_dir)) if Path(cfg.output_dir).is_dir() else None
    if last is None:
        log.warning("--resume: no checkpoint under %s; starting from step 0", cfg.output_dir)
    else:
        log.info("resuming from %s", last)
    return last


def _run_metrics(
    stage: str,
    cfg: SFTRunConfig | GRPORunConfig,
    model_path: str,
    compact: bool,
    dataset: Any,
    data_stats: dict,
) -> dict[str, Any]:
    """What every training run reports first: stage, model, template, device, data."""
    import torch

    return {
        "stage": stage,
        "model": model_path,
        "template": cfg.template,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "lora": cfg.lora,
        "score_labelled_only": compact,
        "examples": len(dataset),
        "data": data_stats,
    }


def _finish(
    trainer: Any, tokenizer: Any, cfg: SFTRunConfig | GRPORunConfig, metrics: dict[str, Any], history: list
) -> None:
    """Save the (merged) model when asked, then train_summary.json."""
    if cfg.save:
        metrics.update(_save(trainer, tokenizer, Path(cfg.output_dir)))
    _write_summary(Path(cfg.output_dir), cfg, metrics, history)


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

    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path, padding_side="right")
    dataset, data_stats = prepare_sft_data(cfg, tokenizer, examples_df, preset_pool)
    log.info(
        "SFT on %d examples (%s) from %s, template %s", len(dataset), data_stats, model_path, cfg.template
    )
    timer = _step_timer("sft")
    trainer = build_sft_trainer(cfg, dataset, tokenizer, callbacks=[timer])
    t0 = time.perf_counter()
    with score_labelled_only(cfg.cpu_score_labelled_only) as compact:
        result = trainer.train(resume_from_checkpoint=resume_checkpoint(cfg))
    seconds = time.perf_counter() - t0
    history = trainer.state.log_history
    losses = _history_values(history, "loss")
    tokens = _history_values(history, "num_tokens")
    steps = trainer.state.global_step
    timing = _timing(timer, steps, seconds)
    step_time = sum(timer.step_seconds) or seconds
    seen = steps * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    metrics: dict[str, Any] = {
        **_run_metrics("sft", cfg, model_path, compact, dataset, data_stats),
        **timing,
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "train_loss_mean": result.training_loss,
        "mean_token_accuracy_last": (_history_values(history, "mean_token_accuracy") or [None])[-1],
        "examples_seen": seen,
        "examples_per_s": round(seen / step_time, 3) if step_time else None,
        "tokens": int(tokens[-1]) if tokens else None,
        "tokens_per_s": round(tokens[-1] / step_time, 1) if tokens and step_time else None,
        **_param_counts(trainer),
    }
    _finish(trainer, tokenizer, cfg, metrics, history)
    log.info(
        "SFT done: %d steps in %.1f s, loss %s -> %s",
        steps,
        seconds,
        metrics["train_loss_first"],
        metrics["train_loss_last"],
    )
    return metrics


# --------------------------------------------------------------------------------------------------
# GRPO
# --------------------------------------------------------------------------------------------------


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
    from llm_predictor.train.datasets import drop_long, grpo_dataset

    if examples_df is None:
        if cfg.examples is None:
            raise ValueError("GRPORunConfig.examples is not set")
        examples_df, preset_pool = load_run_examples(
            cfg.examples, cfg.anchor_dates, cfg.split, cfg.v0_only, cfg.max_train_examples, cfg.seed
        )
    budget = PromptBudget(max_user_tokens=cfg.budget_tokens, count_tokens=hf_token_counter(tokenizer))
    ds = grpo_dataset(examples_df, preset_pool, cfg.template, budget)
    if cfg.max_train_examples is not None and len(ds) > cfg.max_train_examples:
        ds = ds.shuffle(seed=cfg.seed).select(range(cfg.max_train_examples))
    ds, stats = drop_long(ds, tokenizer, cfg.max_prompt_length, "prompt_tokens")
    if len(ds) == 0:
        raise ValueError(f"no GRPO examples left (stats: {stats})")
    return ds, stats


def grpo_batch_args(batch_size: int, num_generations: int, micro_batch_size: int | None) -> dict[str, int]:
    """TRL batch arguments for ``batch_size`` prompts x ``num_generations`` completions per optimizer step.

    In TRL 1.16 ``per_device_train_batch_size`` counts *completions*, and one generation round produces
    ``generation_batch_size`` completions (``generation_batch_size / num_generations`` distinct prompts). We
    generate once per optimizer step and split the completions into micro-batches of ``micro_batch_size``
    for forward/backward (gradient accumulation).
    """
    if num_generations < 2:
        raise ValueError("GRPO needs num_generations >= 2")
    total = batch_size * num_generations
    micro = micro_batch_size or total
    if total % micro:
        raise ValueError(f"micro_batch_size {micro} must divide batch_size * num_generations = {total}")
    return {
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": total // micro,
        "generation_batch_size": total,  # divisible by num_generations by construction
        "num_generations": num_generations,
    }


def build_grpo_trainer(
    cfg: GRPORunConfig,
    dataset: Any,
    tokenizer: Any,
    reward_funcs: list[Any] | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A ``trl.GRPOTrainer`` for ``cfg`` on a prepared dataset (see :func:`prepare_grpo_data`).

    Args:
        cfg: the run config.
        dataset: ``Dataset`` with a conversational ``prompt`` and ``label_advertiser_name``.
        tokenizer: the model's tokenizer (left padding for generation).
        reward_funcs: TRL reward functions; None = ``[make_reward(cfg.reward)]`` (paper eq. 1-5).
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        The trainer.
    """
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        **_common_args(cfg),
        **grpo_batch_args(cfg.batch_size, cfg.num_generations, cfg.micro_batch_size),
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        remove_unused_columns=False,  # the reward needs label_advertiser_name
        log_completions=cfg.log_completions,
    )
    peft_config = (
        _lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        if cfg.lora
        else None
    )
    return GRPOTrainer(
        model=resolve_model(cfg.model),
        reward_funcs=reward_funcs if reward_funcs is not None else [make_reward(cfg.reward)],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
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

    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path, padding_side="left")
    dataset, data_stats = prepare_grpo_data(cfg, tokenizer, examples_df, preset_pool)
    log.info(
        "GRPO on %d prompts (%s) from %s: %d prompts x %d generations per step",
        len(dataset),
        data_stats,
        model_path,
        cfg.batch_size,
        cfg.num_generations,
    )
    timer = _step_timer("grpo")
    trainer = build_grpo_trainer(cfg, dataset, tokenizer, reward_funcs, callbacks=[timer])
    t0 = time.perf_counter()
    with score_labelled_only(cfg.cpu_score_labelled_only) as compact:
        trainer.train(resume_from_checkpoint=resume_checkpoint(cfg))
    seconds = time.perf_counter() - t0
    history = trainer.state.log_history
    rewards = _history_values(history, "reward")
    steps = trainer.state.global_step
    step_time = sum(timer.step_seconds) or seconds
    completions = steps * cfg.batch_size * cfg.num_generations
    metrics: dict[str, Any] = {
        **_run_metrics("grpo", cfg, model_path, compact, dataset, data_stats),
        **_timing(timer, steps, seconds),
        "prompts_per_step": cfg.batch_size,
        "num_generations": cfg.num_generations,
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "reward_std_last": (_history_values(history, "reward_std") or [None])[-1],
        "completion_length_mean_last": (_history_values(history, "completions/mean_length") or [None])[-1],
        "completions": completions,
        "completions_per_s": round(completions / step_time, 3) if step_time else None,
        "examples_per_s": round(steps * cfg.batch_size / step_time, 3) if step_time else None,
        **_param_counts(trainer),
    }
    _finish(trainer, tokenizer, cfg, metrics, history)
    log.info(
        "GRPO done: %d steps in %.1f s, reward %s -> %s",
        steps,
        seconds,
        metrics["reward_first"],
        metrics["reward_last"],
    )
    return metrics
