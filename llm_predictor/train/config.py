"""Run configs of the training stage: SFT and GRPO (TRL's own configs, composed) and continued pre-training.

A run config holds TRL's training arguments (``SFTRunConfig.sft``, ``GRPORunConfig.grpo``) and, for LoRA,
PEFT's adapter config (``lora``) as they are, plus only what is ours: which examples, which prompt template,
the per-user prompt budget, the model to start from, resuming. The factories :func:`sft_config`,
:func:`grpo_config` and :func:`lora_config` build TRL's / PEFT's objects with this project's defaults
(``SFT_DEFAULTS``, ``GRPO_DEFAULTS``, ``LORA_DEFAULTS``); any of their fields can be overridden by keyword.
Three conventions are applied by the factories:

* ``max_steps <= 0`` means "run ``num_train_epochs``" (TRL's ``-1``); ``data_seed`` follows ``seed``;
* ``save_steps > 0`` writes a resumable checkpoint every N steps (the last 2 kept); 0 writes none (the final
  model is saved, merged, by the run itself);
* the device is chosen here: the GPU when ``torch.cuda.is_available()``, else the CPU (``use_cpu=True``,
  fp32; ``bf16`` is only honoured on a GPU: bf16 on an AVX2 CPU is ~12x slower, stack-notes "TRL 1.16 on
  CPU").

Prompts are long (SmolLM2: ~700 tokens of shared prefix for grpo_text + a per-user part): ``budget_tokens``
caps the per-user part, and rows still longer than ``max_length`` (SFT, prompt + completion) or
``max_prompt_length`` (GRPO, prompt) are dropped with a warning rather than truncated (TRL would cut the SFT
completion off the end; TRL 1.16 GRPO has no prompt truncation at all).

:class:`CPTConfig` (continued pre-training with SID tokens, paper 3.5) drives a plain ``transformers.Trainer``
in phase-specific ways (the learning rate and weight decay depend on the phase), so it keeps its own fields.

Nothing here imports TRL, PEFT or torch until a factory runs, so the CLI reads the defaults for free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from llm_predictor.data.prompts import DEFAULT_USER_TOKENS
from llm_predictor.train.rewards import RewardConfig

if TYPE_CHECKING:
    from peft import LoraConfig
    from trl import GRPOConfig, SFTConfig

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

# Our values for the TrainingArguments fields SFT and GRPO share (TRL's default in brackets where it differs).
TRAINER_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "num_train_epochs": 1.0,  # passes over the data when max_steps <= 0 [3.0]
        "lr_scheduler_type": "linear",  # transformers scheduler name ('linear', 'cosine', 'constant', ...)
        "warmup_steps": 0,  # linear warm-up steps
        "max_grad_norm": 1.0,  # gradient clipping norm
        "seed": 42,  # seed of sampling, data order, generation and initialisation (data_seed follows it)
        "logging_steps": 1,  # optimizer steps between log records [10]
        "logging_strategy": "steps",  # log every logging_steps optimizer steps
        "save_steps": 0,  # > 0: a resumable checkpoint (weights, optimizer, scheduler, RNG) every N steps
        "eval_strategy": "no",  # no evaluation inside the trainer (adprior eval scores the saved model)
        "report_to": "none",  # no experiment tracker; metrics go to train_summary.json
        "gradient_checkpointing": False,  # recompute activations in backward (less memory, slower) [True]
        "bf16": False,  # bf16 mixed precision; only honoured on a GPU (never on CPU) [True]
        "disable_tqdm": None,  # None = the Trainer's default progress bar
    }
)

# Our SFTConfig values (paper 3.4.1) on top of TRAINER_DEFAULTS.
SFT_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        **TRAINER_DEFAULTS,
        "output_dir": "models/sft",  # where the trained model and train_summary.json go
        "max_steps": 50,  # optimizer steps; <= 0 = run num_train_epochs instead (the CLI's default too)
        "per_device_train_batch_size": 4,  # sequences per forward/backward pass [8]
        "gradient_accumulation_steps": 1,  # micro-batches per optimizer step
        "learning_rate": 2e-5,  # peak AdamW learning rate (LoRA usually wants ~1e-4 to 2e-4)
        "weight_decay": 0.0,  # AdamW weight decay
        "dataloader_num_workers": 0,  # data loader worker processes
        "max_length": 1536,  # longest prompt+completion in tokens; longer rows are dropped (not cut) [1024]
        "completion_only_loss": True,  # labels -100 on the prompt; prompt-completion data only
        "assistant_only_loss": False,  # SmolLM2's template has no {% generation %} markers; not needed here
        "packing": False,  # one example per sequence
    }
)

# Our GRPOConfig values (paper 3.4.2) on top of TRAINER_DEFAULTS; the batch shape is grpo_config's arguments.
GRPO_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        **TRAINER_DEFAULTS,
        "output_dir": "models/grpo",  # where the trained model and train_summary.json go
        "max_steps": 50,  # optimizer steps; <= 0 = run num_train_epochs instead
        "learning_rate": 1e-6,  # peak AdamW learning rate (TRL's GRPO default)
        "max_completion_length": 256,  # generated tokens per completion (20 names + 5 interests ~ 150-250)
        "temperature": 1.0,  # sampling temperature of the rollouts
        "top_p": 1.0,  # nucleus sampling of the rollouts
        "beta": 0.0,  # KL coefficient; 0 = no reference model (TRL's default)
        "loss_type": "dapo",  # loss aggregation ('dapo' is TRL's default, 'grpo', 'dr_grpo', 'bnpo', ...)
        "remove_unused_columns": False,  # the reward needs label_advertiser_name
        "log_completions": False,  # True: TRL prints sample completions, writes them under output_dir
    }
)

# Our LoraConfig values: every linear layer of the blocks, no dropout.
LORA_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "r": 16,  # LoRA rank
        "lora_alpha": 32,  # LoRA scaling numerator (scale = alpha / r)
        "lora_dropout": 0.0,  # dropout on the LoRA input; 0 skips it (on CPU it cost ~15% of a SmolLM2 step)
        "target_modules": DEFAULT_LORA_TARGETS,  # wrapped layers
        "bias": "none",  # no bias terms train
        "task_type": "CAUSAL_LM",  # a causal LM adapter
    }
)


def device_kwargs(bf16: bool) -> dict[str, Any]:
    """TrainingArguments for this machine: the GPU if there is one (bf16 when asked), else the CPU in fp32."""
    import torch

    cuda = torch.cuda.is_available()
    return {"use_cpu": not cuda, "bf16": bool(bf16 and cuda), "fp16": False, "dataloader_pin_memory": cuda}


def _trainer_kwargs(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``overrides``, with the module's conventions applied (steps, seeds,
    checkpoints, device)."""
    kw = {**defaults, **overrides}
    kw["output_dir"] = str(kw["output_dir"])
    kw["max_steps"] = kw["max_steps"] if kw["max_steps"] > 0 else -1
    kw.setdefault("data_seed", kw["seed"])
    save_steps = kw.pop("save_steps")
    if save_steps > 0:  # checkpoints only to resume a run that spans sittings
        kw.setdefault("save_strategy", "steps")
        kw["save_steps"] = save_steps
        kw.setdefault("save_total_limit", 2)
    else:
        kw.setdefault("save_strategy", "no")
    kw.update(device_kwargs(kw.pop("bf16")))
    return kw


def sft_config(**overrides: Any) -> SFTConfig:
    """TRL's ``SFTConfig`` with ``SFT_DEFAULTS``, updated by ``overrides``.

    Args:
        overrides: any ``SFTConfig`` field (``output_dir``, ``max_steps``, ``learning_rate``, ...); see the
            module doc for ``max_steps``, ``save_steps`` and ``bf16``.

    Returns:
        The ``trl.SFTConfig`` (its device already chosen).
    """
    from trl import SFTConfig

    return SFTConfig(**_trainer_kwargs(SFT_DEFAULTS, overrides))


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


def grpo_config(
    batch_size: int = 4, num_generations: int = 4, micro_batch_size: int | None = None, **overrides: Any
) -> GRPOConfig:
    """TRL's ``GRPOConfig`` with ``GRPO_DEFAULTS`` and the batch shape below, updated by ``overrides``.

    Args:
        batch_size: distinct prompts per optimizer step.
        num_generations: completions sampled per prompt (the GRPO group); >= 2.
        micro_batch_size: completions per forward/backward; None = batch_size * num_generations at once.
        overrides: any other ``GRPOConfig`` field; the module doc says how ``max_steps``, ``save_steps``
            and ``bf16`` are read.

    Returns:
        The ``trl.GRPOConfig`` (its device already chosen).
    """
    from trl import GRPOConfig

    batch = grpo_batch_args(batch_size, num_generations, micro_batch_size)
    return GRPOConfig(**_trainer_kwargs({**GRPO_DEFAULTS, **batch}, overrides))


def lora_config(**overrides: Any) -> LoraConfig:
    """PEFT's ``LoraConfig`` with ``LORA_DEFAULTS``, updated by ``overrides`` (``r``, ``lora_alpha``, ...).

    Args:
        overrides: any ``LoraConfig`` field.

    Returns:
        The ``peft.LoraConfig``; the adapter is merged into the base weights before saving.
    """
    from peft import LoraConfig

    kw = {**LORA_DEFAULTS, **overrides}
    kw["target_modules"] = list(kw["target_modules"])
    return LoraConfig(**kw)


@dataclass
class SFTRunConfig:
    """One SFT run (paper 3.4.1): TRL's arguments, an optional LoRA adapter, and the data it trains on."""

    sft: SFTConfig = field(
        default_factory=sft_config
    )  # TRL's arguments (output_dir, steps, lr, max_length...)
    lora: LoraConfig | None = None  # LoRA adapter (lora_config()), merged before saving; None = all weights
    examples: Path | None = None  # compiled examples folder (compile output: examples/, preset_pool/)
    model: str | Path | None = (
        None  # HF model folder to start from; None = ensure_base_model() (SmolLM2-135M)
    )
    anchor_dates: list[date] | None = None  # anchor dates to train on; None = all compiled dates
    split: str | None = "train"  # examples split used ('train' | 'eval'); None = both
    v0_only: bool = False  # True: only V0 users (rich matched and attributed histories)
    template: str = "sft_text"  # 'sft_text' (1 advertiser, paper A.1) | 'sft_text_20' | 'sft_sid' | ...
    popular: list[str] | None = None  # sft_text_20 target filler after label + active; None = preset pool
    budget_tokens: int = DEFAULT_USER_TOKENS  # token budget of the per-user prompt part (PromptBudget)
    max_train_examples: int | None = None  # cap on labelled rows (a seeded sample, sft.seed); None = all
    cpu_score_labelled_only: bool = True  # on CPU, score only positions with labels (see score_labelled_only)
    threads: int | None = None  # torch CPU threads; None = the cores free of other processes at start
    group_by_date: bool = True  # micro-batches of one anchor date (shared preset pool), seeded order
    share_prefix: bool = True  # run a micro-batch's shared prompt prefix once (train.prefix; needs grouping)
    save: bool = True  # save the trained (merged) model and tokenizer into sft.output_dir
    resume: bool = False  # continue from the newest output_dir/checkpoint-N (same config); none: start fresh

    @property
    def output_dir(self) -> Path:
        """Where the trained model and train_summary.json go (``sft.output_dir``)."""
        return Path(self.sft.output_dir)

    @property
    def seed(self) -> int:
        """The seed of row sampling and of TRL (``sft.seed``)."""
        return int(self.sft.seed)


@dataclass
class GRPORunConfig:
    """One GRPO run (paper 3.4.2): 20 advertisers + 5 interests, reward of eq. 1-5."""

    grpo: GRPOConfig = field(default_factory=grpo_config)  # TRL's arguments (output_dir, batch shape, lr...)
    lora: LoraConfig | None = None  # LoRA adapter (lora_config()), merged before saving; None = all weights
    examples: Path | None = None  # compiled examples folder (compile output: examples/, preset_pool/)
    model: str | Path | None = None  # HF model folder, typically the SFT output; None = ensure_base_model()
    anchor_dates: list[date] | None = None  # anchor dates to train on; None = all compiled dates
    split: str | None = "train"  # examples split used ('train' | 'eval'); None = both
    v0_only: bool = False  # True: only V0 users
    template: str = "grpo_text"  # 'grpo_text' (paper A.3, the inference format) | 'grpo_sid' | ...
    budget_tokens: int = DEFAULT_USER_TOKENS  # token budget of the per-user prompt part
    max_prompt_length: int | None = 1536  # longest chat-templated prompt in tokens; longer rows are dropped
    reward: RewardConfig = field(default_factory=RewardConfig)  # eq. 1-5 parameters (paper defaults)
    max_train_examples: int | None = None  # cap on labelled rows (a seeded sample, grpo.seed); None = all
    cpu_score_labelled_only: bool = True  # on CPU, score only completion positions (see score_labelled_only)
    threads: int | None = None  # torch CPU threads; None = the cores free of other processes at start
    share_prefix: bool = True  # score each prompt once for all its completions (train.prefix)
    save: bool = True  # save the trained (merged) model and tokenizer into grpo.output_dir
    resume: bool = False  # continue from the newest output_dir/checkpoint-N (same config); none: start fresh

    @property
    def output_dir(self) -> Path:
        """Where the trained model and train_summary.json go (``grpo.output_dir``)."""
        return Path(self.grpo.output_dir)

    @property
    def seed(self) -> int:
        """The seed of row sampling, generation and of TRL (``grpo.seed``)."""
        return int(self.grpo.seed)

    @property
    def num_generations(self) -> int:
        """Completions sampled per prompt (``grpo.num_generations``)."""
        return int(self.grpo.num_generations)

    @property
    def prompts_per_step(self) -> int:
        """Distinct prompts per optimizer step (one generation round of ``grpo.generation_batch_size``)."""
        return int(self.grpo.generation_batch_size) // self.num_generations


PHASE1_LR = 1e-3  # embeddings-only training tolerates (and needs) a larger step
PHASE2_LR = 2e-5  # full-parameter training, as the SFT default


@dataclass
class CPTConfig:
    """One continued pre-training phase (paper 3.5; llm_predictor.train.cpt)."""

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
    weight_decay: float = 0.0  # AdamW weight decay in phase 2 (phase 1 uses 0: decay would move frozen rows)
    max_grad_norm: float = 1.0  # gradient clipping norm
    init_noise_std: float = 0.0  # std of noise added to the mean-initialised new SID rows (0 = the mean)
    seed: int = 42  # seed of text sampling, data order and initialisation
    logging_steps: int = 1  # optimizer steps between log records
    bf16: bool = False  # bf16 mixed precision; only honoured on a GPU
    threads: int | None = None  # torch CPU threads during training; None = leave torch's setting
    verify_frozen: bool = True  # phase 1: compare the non-SID embedding rows before and after training
    save: bool = True  # save the model and tokenizer into output_dir
    disable_tqdm: bool | None = None  # None = the Trainer's default progress bar
