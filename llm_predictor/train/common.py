"""What every training run (SFT, GRPO, CPT) shares: model and tokenizer, device, timing, saving, the summary.

* :func:`resolve_model` / :func:`load_tokenizer`: the model folder to start from (the converted SmolLM2 base
  model when none is given) and its tokenizer with a pad token and a chat template.
* :func:`score_labelled_only`: on CPU, TRL 1.16's fused LM head scores every prompt position over the whole
  vocabulary; the runs patch that switch for their duration so that only labelled (completion) positions are
  scored (identical values, an order of magnitude faster GRPO steps with long prompts).
* :func:`step_timer` / :func:`timing`: wall time of every optimizer step; each log record is logged with
  steps done / total, the rate and the ETA.
* :func:`run_trainer`: ``trainer.train()`` (resumed, patched as above, on CPU with the threads of
  :func:`adprior.threads.configure`), timed.
* :func:`finish_run`: adds the parameter counts; with a LoRA adapter, it is merged into the base weights
  before saving, so every stage reads and writes a plain Hugging Face model folder (the adapter alone is
  saved too, under ``output_dir/adapter``); then
  :func:`write_summary` writes ``train_summary.json`` (command, config, metrics, TRL's log history) into the
  output folder.
* :func:`resume_checkpoint`: the newest ``output_dir/checkpoint-N`` a resumed run continues from.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adprior.progress import progress_line
from adprior.threads import configure

if TYPE_CHECKING:
    from llm_predictor.train.config import GRPORunConfig, SFTRunConfig

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"
ADAPTER_DIR = "adapter"  # a LoRA run's adapter alone, beside the merged model in output_dir


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


def step_timer(name: str) -> Any:
    """A Trainer callback recording the wall time of every optimizer step (generation included for GRPO)
    in ``step_seconds`` and passing TRL's log records to ``logging``."""
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
                done = progress_line(
                    state.global_step,
                    state.max_steps,
                    len(self.step_seconds),  # steps of this process (a resumed run's earlier ones excluded)
                    sum(self.step_seconds),
                    "steps",
                )
                log.info("%s %s: %s", name, done, shown)

    return StepTimer()


def quiet_progress(trainer: Any) -> None:
    """Without a terminal, drop the Trainer's own per-step output: its tqdm bar (a screen of carriage
    returns in a log file) and the log dicts it prints. :func:`step_timer` logs the same facts, with
    done / total, rate and ETA. On a terminal, or with DEBUG logging (``adprior -v``), both stay."""
    if sys.stderr.isatty() or log.isEnabledFor(logging.DEBUG):
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)


def timing(timer: Any, steps: int, seconds: float) -> dict[str, Any]:
    """Steps, total seconds and per-step seconds (mean, and mean after the first) of a :func:`step_timer`."""
    st = timer.step_seconds
    return {
        "steps": steps,
        "seconds": round(seconds, 3),
        "step_seconds": [round(s, 3) for s in st],
        "s_per_step": round(sum(st) / len(st), 3) if st else None,
        "s_per_step_after_first": round(sum(st[1:]) / len(st[1:]), 3) if len(st) > 1 else None,
    }


def history_values(history: list[dict[str, Any]], key: str) -> list[float]:
    """The non-null values of ``key`` in TRL's log history, in order."""
    return [h[key] for h in history if key in h and h[key] is not None]


def param_counts(trainer: Any) -> dict[str, int]:
    """Total and trainable parameters of the trainer's model."""
    params = list(trainer.model.parameters())
    return {
        "params_total": sum(p.numel() for p in params),
        "params_trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def run_metrics(
    stage: str,
    cfg: SFTRunConfig | GRPORunConfig,
    model_path: str,
    compact: bool,
    dataset: Any,
    data_stats: dict,
) -> dict[str, Any]:
    """What every SFT / GRPO run reports first: stage, model, template, device, data."""
    import torch

    return {
        "stage": stage,
        "model": model_path,
        "template": cfg.template,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "lora": cfg.lora is not None,
        "score_labelled_only": compact,
        "examples": len(dataset),
        "data": data_stats,
    }


def run_trainer(trainer: Any, cfg: SFTRunConfig | GRPORunConfig) -> tuple[Any, float, bool]:
    """``trainer.train()`` from :func:`resume_checkpoint`, inside :func:`score_labelled_only` when
    ``cfg.cpu_score_labelled_only``: TRL's result, the wall seconds and whether the patch was active."""
    import torch

    if not torch.cuda.is_available():
        configure(cfg.threads)  # the cores free of other processes (adprior.threads), or cfg.threads
    t0 = time.perf_counter()
    with score_labelled_only(cfg.cpu_score_labelled_only) as compact:
        result = trainer.train(resume_from_checkpoint=resume_checkpoint(cfg))
    return result, time.perf_counter() - t0, compact


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


def _save(trainer: Any, tokenizer: Any, out: Path) -> dict[str, Any]:
    """Save the trained model (LoRA merged into the base weights) and tokenizer as a plain HF folder."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    merged = False
    try:
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model.save_pretrained(str(out / ADAPTER_DIR))  # the adapter alone (what `train ship` commits)
            model = model.merge_and_unload()
            merged = True
    except ImportError:  # pragma: no cover - peft is a dependency
        pass
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    log.info("saved %smodel to %s", "merged LoRA " if merged else "", out)
    return {"model_dir": str(out), "lora_merged": merged}


def finish_run(
    trainer: Any, tokenizer: Any, cfg: SFTRunConfig | GRPORunConfig, metrics: dict[str, Any], history: list
) -> None:
    """Add the parameter counts to ``metrics``, save the (merged) model when ``cfg.save``, then write
    train_summary.json."""
    metrics.update(param_counts(trainer))
    if cfg.save:
        metrics.update(_save(trainer, tokenizer, Path(cfg.output_dir)))
    write_summary(Path(cfg.output_dir), cfg, metrics, history)


def _config_dict(cfg: Any) -> dict[str, Any]:
    """A run config as JSON-ready values; composed TRL / PEFT configs through their own ``to_dict``."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        elif is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        out[f.name] = value
    return out


def _json_default(value: Any) -> Any:
    return sorted(value) if isinstance(value, set | frozenset) else str(value)


def write_summary(out: Path, cfg: Any, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Write ``out/train_summary.json``: the command line, the config (a dataclass), metrics, log history."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": shlex.join(sys.argv),
        "config": _config_dict(cfg),
        "metrics": metrics,
        "log_history": history,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(payload, indent=2, default=_json_default))
