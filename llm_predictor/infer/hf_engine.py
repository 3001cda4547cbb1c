"""The transformers engine: batched Hugging Face ``generate`` with the shared prompt prefix's KV cache.

:class:`TransformersEngine` (``EngineConfig(kind='transformers')``, CPU or GPU) runs the chat-templated
prefix through the model once per distinct prefix text and copies its KV cache to every batch, so only each
user's remaining tokens are computed; constrained decoding goes through
:class:`llm_predictor.infer.constrain.GrammarLogitsProcessor`. The interface, the config and the counters
are in :mod:`llm_predictor.infer.engines`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm_predictor.data.templates import wrap_as_answer
from llm_predictor.infer.constrain import GrammarLogitsProcessor
from llm_predictor.infer.decoding import (
    DecodeConfig,
    chat_texts,
    eos_pad,
    generate_kwargs,
    load_model,
    strip_after_eos,
)
from llm_predictor.infer.engines import (
    EngineConfig,
    Generation,
    count_generations,
    model_path,
    model_version,
    new_stats,
    row_status,
    start_generate,
)
from llm_predictor.infer.grammar import AnswerSpec

log = logging.getLogger(__name__)

# Marks where the user suffix starts inside the chat text; never tokenized.
_SUFFIX_SENTINEL = "\ue000adprior-user-suffix\ue000"


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
            path = model_path(cfg)
            self.model_version = model_version(path)
            model, tokenizer = load_model(path, cfg.device, cfg.dtype)
        else:
            name_or_path = getattr(model, "name_or_path", "") or ""
            self.model_version = (
                model_version(name_or_path) if Path(name_or_path).is_dir() else "in-memory@unknown"
            )
        self.model, self.tokenizer = model, tokenizer
        self.model.eval()
        self.eos, self.pad = eos_pad(tokenizer, model)
        self.device = getattr(model, "device", torch.device("cpu"))
        self.stats = new_stats()
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
        kw = generate_kwargs(self._decode, self.eos, self.pad)
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
        t0, n, specs = start_generate(self.cfg, suffixes, allowed_names, interests)
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
                    seq = strip_after_eos(gen[b], self.eos)
                    status = proc.result(b, seq) if proc is not None else "ok"
                    text = self.tokenizer.decode(
                        seq, skip_special_tokens=True, clean_up_tokenization_spaces=False
                    )
                    results[i] = Generation(
                        text,
                        len(ids[i]),
                        len(ids[i]) - (p if hit else 0),
                        len(seq),
                        row_status(specs[i] if specs else None, status),
                    )
        finally:
            if was_training:
                self.model.train()
        done = [g for g in results if g is not None]
        self.stats["prefix_misses"] += sum(1 for h in hits if not h) if entry is not None else 0
        count_generations(self.stats, done, t0)
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
