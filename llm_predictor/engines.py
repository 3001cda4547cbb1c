"""Inference engines for nightly batch inference: one prompt prefix shared by many users.

Every user's prompt is ``prefix + suffixes[i]`` (:func:`llm_predictor.prompts.shared_prefix` and
:func:`~llm_predictor.prompts.user_suffix`), sent as a single user chat message with the tokenizer's chat
template (``add_generation_prompt=True``, as :func:`llm_predictor.decoding.chat_texts` does). An engine
returns one :class:`Generation` per user: the completion in the inference XML format (paper A.3) and its
token counts. :func:`make_engine` builds one from an :class:`EngineConfig`:

* ``kind='transformers'`` (:class:`TransformersEngine`, CPU or GPU): batched ``model.generate``. With
  ``prefix_cache`` the chat-templated prefix is run through the model once per distinct prefix text; its
  KV cache is copied to every batch and only each user's remaining tokens are computed (see the class
  docstring for the layout: padding sits *between* the cached prefix and each user's suffix). Constrained
  decoding uses the token trie of :mod:`llm_predictor.decoding`.
* ``kind='vllm'`` (:class:`VLLMEngine`, GPU): vLLM with automatic prefix caching; constrained decoding is
  a structured-outputs regex of the row's allowed names (:func:`answer_regex`). vLLM is imported lazily and
  is not a dependency of the CPU install (``pip install 'adprior[gpu]'``).

:func:`model_version` identifies a model folder by content: ``<folder name>@<12 hex of sha256>``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol, runtime_checkable

import torch

from llm_predictor.decoding import (
    DecodeConfig,
    NameTokenizer,
    NameTrie,
    TrieLogitsProcessor,
    _eos_pad,
    _generate_kwargs,
    _per_row_names,
    _strip_after_eos,
    chat_texts,
    load_model,
    wrap_as_answer,
)

log = logging.getLogger(__name__)

KINDS = ("transformers", "vllm")
STRATEGIES = ("greedy", "beam")
INSTALL_HINT = "pip install 'adprior[gpu]'"
SEPARATOR = "|"  # between names in the answer (the paper's output format)
# Marks where the user suffix starts inside the chat text; never tokenized.
_SUFFIX_SENTINEL = "\ue000adprior-user-suffix\ue000"


@dataclass
class EngineConfig:
    """Which engine runs which model, and how it decodes."""

    kind: str = "transformers"  # 'transformers' (CPU or GPU) | 'vllm' (GPU; pip install 'adprior[gpu]')
    model: str | None = None  # local HF model folder; None -> llm_predictor.base_model.ensure_base_model()
    device: str = "auto"  # transformers: 'auto' (cuda if available, else cpu) | 'cpu' | 'cuda' | 'cuda:1' ...
    # 'auto' (transformers: bf16 on GPU, fp32 on CPU; vllm: its own) | 'float32' | 'bfloat16'
    dtype: str = "auto"
    batch_size: int = 8  # users per model.generate call (transformers; vLLM schedules its own batches)
    max_new_tokens: int = 256  # generated tokens per user (a 20-name XML answer needs ~150-250)
    strategy: str = "greedy"  # 'greedy' | 'beam' (the best of num_beams beams is returned)
    num_beams: int = 1  # beams for strategy='beam'
    constrained: bool = True  # names only from the row's allowed pool (transformers: token trie; vllm: regex)
    max_names: int = 20  # most advertiser names in one answer
    min_names: int | None = None  # transformers constrained: no EOS before this many names; None -> max_names
    prefix_cache: bool = True  # transformers: compute the shared prompt prefix once, reuse its KV cache
    prefix_margin_tokens: int = 2  # transformers: prefix tokens left to the user (BPE merges at the boundary)
    prefix_cache_entries: int = 4  # transformers: distinct prefixes whose KV caches are kept (LRU)
    sort_by_length: bool = True  # transformers: batch users of similar prompt length together (less padding)
    threads: int | None = None  # transformers on CPU: torch.set_num_threads at start-up; None keeps torch's
    gpu_memory_utilization: float = 0.85  # vllm: fraction of GPU memory for weights and KV cache
    enable_prefix_caching: bool = True  # vllm: automatic prefix caching (the shared prefix is computed once)
    max_interests: int = 5  # vllm constrained: most free-text interests the regex allows
    seed: int = 0  # torch / vLLM seed (greedy and beam are deterministic; kept for reproducible set-up)

    def validate(self) -> None:
        """Raise ValueError on an unknown kind / strategy or out-of-range numbers."""
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if min(self.batch_size, self.max_new_tokens, self.num_beams, self.max_names) < 1:
            raise ValueError("batch_size, max_new_tokens, num_beams and max_names must be >= 1")
        if self.min_names is not None and not 1 <= self.min_names <= self.max_names:
            raise ValueError("min_names must be None or in [1, max_names]")
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


@runtime_checkable
class Engine(Protocol):
    """What the nightly inference needs from an engine."""

    model_version: str  # '<model folder name>@<12 hex of sha256 of config.json + weight files>'
    stats: dict[str, Any]  # cumulative counters (see the engines' ``_new_stats``)

    def generate(
        self, prefix: str, suffixes: Sequence[str], allowed_names: Sequence[Sequence[str]] | None = None
    ) -> list[Generation]:
        """One Generation per suffix; ``allowed_names`` (one pool per user, or one shared pool) is
        required when the engine is constrained."""
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
    }


def _start_generate(
    cfg: EngineConfig, suffixes: Sequence[str], allowed_names: Sequence[Sequence[str]] | None
) -> tuple[float, int, list[Sequence[str]] | None]:
    """The shared start of an engine's ``generate``: reject a constrained call without ``allowed_names``,
    then return the start time, the number of users and each user's allowed names (None unconstrained)."""
    if cfg.constrained and allowed_names is None:
        raise ValueError("a constrained engine needs allowed_names")
    t0 = time.perf_counter()
    n = len(suffixes)
    pools = _per_row_names(allowed_names, n) if cfg.constrained else None
    return t0, n, pools


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
    :func:`llm_predictor.decoding.generate`. The cache copy assumes full-attention layers (Llama, Qwen2,
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
        self.name_tok = NameTokenizer(tokenizer, SEPARATOR)
        self.stats = _new_stats()
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()
        self._decode = DecodeConfig(
            strategy=cfg.strategy,
            num_beams=cfg.num_beams,
            num_return_sequences=1,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            constrained=cfg.constrained,
            mode="list",
            max_names=cfg.max_names,
            min_names=cfg.min_names or cfg.max_names,
            separator=SEPARATOR,
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
        self, ids: list[list[int]], entry: _Prefix | None, pools: list[Sequence[str]] | None, **extra: Any
    ) -> tuple[Any, TrieLogitsProcessor | None, int, int]:
        """model.generate on one batch; (output, trie processor or None, input width, pad count)."""
        from transformers import LogitsProcessorList

        input_ids, mask, pads = self._layout(ids, entry)
        width = input_ids.shape[1]
        kw = _generate_kwargs(self._decode, self.eos, self.pad)
        kw.update(extra)
        if entry is not None:
            kw["past_key_values"] = self._batch_cache(entry, len(ids) * self.cfg.beams())
        proc = None
        if pools is not None:
            tries = [NameTrie(names, self.name_tok, list_mode=True) for names in pools]
            proc = TrieLogitsProcessor(
                tries,
                self.cfg.beams(),
                width,
                self.eos,
                self.pad,
                int(kw["max_new_tokens"]),
                True,
                self.cfg.max_names,
                self._decode.min_names,
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
        self, prefix: str, suffixes: Sequence[str], allowed_names: Sequence[Sequence[str]] | None = None
    ) -> list[Generation]:
        """One Generation per suffix, in order (see the class docstring)."""
        t0, n, pools = _start_generate(self.cfg, suffixes, allowed_names)
        ids, entry, hits = self._plan(prefix, suffixes)
        p = len(entry.ids) if entry is not None else 0
        results: list[Generation | None] = [None] * n
        was_training = self.model.training
        self.model.eval()
        try:
            for idx, hit in self._chunks(ids, hits):
                batch_pools = [pools[i] for i in idx] if pools is not None else None
                out, proc, width, pads = self._run([ids[i] for i in idx], entry if hit else None, batch_pools)
                gen = out[:, width:].tolist()
                self.stats["batches"] += 1
                self.stats["padding_tokens"] += pads
                for b, i in enumerate(idx):
                    seq = _strip_after_eos(gen[b], self.eos)
                    if proc is not None:
                        names = proc.names(b, seq)
                        text = wrap_as_answer(names or [])
                    else:
                        text = self.tokenizer.decode(
                            seq, skip_special_tokens=True, clean_up_tokenization_spaces=False
                        )
                    results[i] = Generation(text, len(ids[i]), len(ids[i]) - (p if hit else 0), len(seq))
        finally:
            if was_training:
                self.model.train()
        done = [g for g in results if g is not None]
        self.stats["users"] += n
        self.stats["prefix_misses"] += sum(1 for h in hits if not h) if entry is not None else 0
        self.stats["prompt_tokens"] += sum(g.prompt_tokens for g in done)
        self.stats["computed_prompt_tokens"] += sum(g.computed_prompt_tokens for g in done)
        self.stats["generated_tokens"] += sum(g.generated_tokens for g in done)
        self.stats["seconds"] += time.perf_counter() - t0
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

_REGEX_META = frozenset("\\.^$*+?()[]{}|")
_INTEREST_RE = r"[^|\[\]<>\n]{1,80}"  # one free-text interest: no separator, brackets, tags or newline


def _regex_escape(text: str) -> str:
    """Escape only the regex metacharacters (``re.escape`` also escapes spaces, '&', '#', '~', '-', which
    some structured-output regex dialects reject as unknown escapes)."""
    return "".join("\\" + c if c in _REGEX_META else c for c in text)


def _regex_names(names: Sequence[str]) -> list[str]:
    """Stripped, de-duplicated names without the separator (the names a constrained answer can hold)."""
    clean = dict.fromkeys(str(n).strip() for n in names if n is not None)
    return [n for n in clean if n and SEPARATOR not in n]


def answer_regex(names: Sequence[str], max_names: int = 20, max_interests: int = 5) -> str:
    """A regex matching exactly the answers :func:`wrap_as_answer` writes over ``names``.

    ``<answer>\\n<interests>\\n[...]\\n</interests>\\n<advertiser_names>\\n[...]\\n</advertiser_names>\\n</answer>``
    with 0..``max_interests`` free-text interests and 1..``max_names`` names from ``names`` (stripped,
    de-duplicated; names containing '|' are dropped, as the trie does), separated by '|'. Repeated names are
    not excluded (a regex cannot say so cheaply); the parser de-duplicates.
    """
    clean = _regex_names(names)
    if not clean:
        raise ValueError("answer_regex needs at least one allowed name")
    if max_names < 1 or max_interests < 0:
        raise ValueError("max_names must be >= 1 and max_interests >= 0")
    # longest first, so a name that is a prefix of another is not preferred by leftmost-first engines
    name = "(?:" + "|".join(_regex_escape(n) for n in sorted(clean, key=lambda s: (-len(s), s))) + ")"
    names_re = name + (f"(?:\\|{name}){{0,{max_names - 1}}}" if max_names > 1 else "")
    if max_interests > 0:
        tail = f"(?:\\|{_INTEREST_RE}){{0,{max_interests - 1}}}" if max_interests > 1 else ""
        interests_re = f"(?:{_INTEREST_RE}{tail})?"
    else:
        interests_re = ""
    return (
        "<answer>\\n<interests>\\n\\[" + interests_re + "\\]\\n</interests>\\n"
        "<advertiser_names>\\n\\[" + names_re + "\\]\\n</advertiser_names>\\n</answer>"
    )


def _vllm_api() -> SimpleNamespace:
    """The vLLM names VLLMEngine uses, in one place. Targets vLLM 0.33 (the ``gpu`` extra's pin):

    * ``vllm.LLM(model=, dtype=, seed=, enable_prefix_caching=, gpu_memory_utilization=)``;
      ``LLM.get_tokenizer()``; ``LLM.generate(prompts, sampling_params)`` with token prompts
      ``{"prompt_token_ids": [...]}`` and one SamplingParams per prompt -> ``RequestOutput`` with
      ``prompt_token_ids``, ``num_cached_tokens`` (prefix-cache hits) and ``outputs[0].text / .token_ids``;
    * ``SamplingParams(temperature=0.0, max_tokens=, seed=, structured_outputs=StructuredOutputsParams(regex=))``
      (``vllm.sampling_params``; the ``guided_decoding=GuidedDecodingParams`` API was removed in 0.12);
    * ``LLM.beam_search(prompts, BeamSearchParams(beam_width=, max_tokens=))`` -> ``BeamSearchOutput`` with
      ``sequences`` best first, each with ``tokens`` (prompt included).
    """
    try:
        import vllm
        from vllm.sampling_params import BeamSearchParams, SamplingParams, StructuredOutputsParams
    except ImportError as exc:
        raise ImportError(
            f"the 'vllm' engine needs vLLM (a CUDA build, GPU machines only): {INSTALL_HINT} ({exc})"
        ) from exc
    return SimpleNamespace(
        LLM=vllm.LLM,
        SamplingParams=SamplingParams,
        BeamSearchParams=BeamSearchParams,
        StructuredOutputsParams=StructuredOutputsParams,
    )


class VLLMEngine:
    """vLLM on a GPU: automatic prefix caching shares the prefix's KV blocks across users.

    Constrained greedy decoding forces the full ``<answer>`` XML with names from the row's pool through a
    structured-outputs regex (:func:`answer_regex`). vLLM's beam search takes no structured outputs, so
    ``strategy='beam'`` requires ``constrained=False``.
    """

    def __init__(self, cfg: EngineConfig) -> None:
        """Import vLLM (ImportError with the install hint if missing) and load the model."""
        cfg.validate()
        self.api = _vllm_api()
        if cfg.strategy == "beam" and cfg.constrained:
            raise ValueError("vLLM beam search does not support structured outputs; use constrained=False")
        self.cfg = cfg
        path = _model_path(cfg)
        self.model_version = model_version(path)
        self.llm = self.api.LLM(
            model=str(path),
            dtype=cfg.dtype,
            seed=cfg.seed,
            enable_prefix_caching=cfg.enable_prefix_caching,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.stats = _new_stats()

    def _params(self, pool: Sequence[str] | None) -> Any:
        kw: dict[str, Any] = {
            "temperature": 0.0,
            "max_tokens": self.cfg.max_new_tokens,
            "seed": self.cfg.seed,
        }
        if pool is not None:
            regex = answer_regex(pool, self.cfg.max_names, self.cfg.max_interests)
            kw["structured_outputs"] = self.api.StructuredOutputsParams(regex=regex)
        return self.api.SamplingParams(**kw)

    def generate(
        self, prefix: str, suffixes: Sequence[str], allowed_names: Sequence[Sequence[str]] | None = None
    ) -> list[Generation]:
        """One Generation per suffix, in order."""
        t0, n, pools = _start_generate(self.cfg, suffixes, allowed_names)
        texts = chat_texts(self.tokenizer, [prefix + s for s in suffixes])
        ids = [list(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        prompts = [{"prompt_token_ids": x} for x in ids]
        out: list[Generation] = []
        if self.cfg.strategy == "beam":
            params = self.api.BeamSearchParams(
                beam_width=self.cfg.num_beams, max_tokens=self.cfg.max_new_tokens
            )
            for x, res in zip(ids, self.llm.beam_search(prompts, params), strict=True):
                gen = list(res.sequences[0].tokens[len(x) :]) if res.sequences else []
                text = self.tokenizer.decode(gen, skip_special_tokens=True)
                out.append(Generation(text, len(x), len(x), len(gen)))  # no cache-hit counts from beam_search
        else:
            # a row whose pool holds no usable name gets the empty answer without running the model
            run = [i for i in range(n) if pools is None or _regex_names(pools[i])]
            params = [self._params(pools[i] if pools is not None else None) for i in run]
            results = self.llm.generate([prompts[i] for i in run], params, use_tqdm=False) if run else []
            by_row = dict(zip(run, results, strict=True))
            for i, x in enumerate(ids):
                res = by_row.get(i)
                if res is None:
                    out.append(Generation(wrap_as_answer([]), len(x), 0, 0))
                    continue
                cached = int(getattr(res, "num_cached_tokens", 0) or 0)
                comp = res.outputs[0]
                out.append(Generation(comp.text, len(x), len(x) - cached, len(comp.token_ids)))
        self.stats["users"] += n
        self.stats["prompt_tokens"] += sum(g.prompt_tokens for g in out)
        self.stats["computed_prompt_tokens"] += sum(g.computed_prompt_tokens for g in out)
        self.stats["generated_tokens"] += sum(g.generated_tokens for g in out)
        self.stats["seconds"] += time.perf_counter() - t0
        return out

    def close(self) -> None:
        """Drop the vLLM engine and free GPU memory."""
        self.llm = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = [
    "Engine",
    "EngineConfig",
    "Generation",
    "TransformersEngine",
    "VLLMEngine",
    "answer_regex",
    "make_engine",
    "model_version",
]
