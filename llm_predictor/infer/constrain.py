"""Constrained decoding: the answer grammar (:mod:`llm_predictor.infer.grammar`) plus a repeat ban.

**No duplicates.** A context-free grammar cannot say "20 *distinct* names" without enumerating subsets, so
the grammar says "20 names of the pool" and :class:`DistinctItems` removes, at each step, the tokens the
grammar allows that would repeat an item already written in the same list (or lead only to such items).
It looks only at the (few) tokens the grammar allows, in bytes, so it is cheap and exact for any
byte-level tokenizer. Both engines apply grammar and filter: transformers through
:class:`GrammarLogitsProcessor` (xgrammar's matcher and bitmask kernels; xgrammar's own
``contrib.hf.LogitsProcessor`` assumes row i stays row i, which beam search breaks, so matchers here are
kept per generated prefix and forked when beams branch), vLLM through its structured outputs
(``StructuredOutputsParams(grammar=...)``, xgrammar backend) plus :class:`VLLMDistinctItems`, a vLLM
logits processor that reads the spec from ``SamplingParams.extra_args``. vLLM applies the grammar
bitmask before its logits processors, so the filter sees the grammar's choices as the finite logits.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from llm_predictor.infer.grammar import AnswerSpec, answer_ebnf

_NAMES_OPEN = b"<advertiser_names>\n["
_INTERESTS_OPEN = b"<interests>\n["

# --------------------------------------------------------------------------------------------------
# No duplicates inside a list
# --------------------------------------------------------------------------------------------------


class DistinctItems:
    """Which grammar-allowed tokens keep every list of the answer free of repeats (see the module doc)."""

    def __init__(self, spec: AnswerSpec, token_bytes: Sequence[bytes], stop_ids: Iterable[int]) -> None:
        self.spec = spec
        self.token_bytes = token_bytes
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        enc = [n.encode() for n in spec.names]
        if spec.mode == "answer":
            self.sections = [
                (_INTERESTS_OPEN, sorted(i.encode() for i in spec.interests)),
                (_NAMES_OPEN, sorted(enc)),
            ]
        else:
            self.sections = [(b"", sorted(enc))]
        self.item_sets = [frozenset(items) for _, items in self.sections]

    def _section(self, text: bytes) -> tuple[int, bytes] | None:
        """(section index, its text so far) when ``text`` ends inside a list, else None."""
        if self.spec.mode == "single":
            return None
        if self.spec.mode == "list":
            return 0, text
        for k in (1, 0):
            opener = self.sections[k][0]
            at = text.rfind(opener)
            if at >= 0:
                body = text[at + len(opener) :]
                return None if b"]" in body else (k, body)
        return None

    def _has_unwritten(self, k: int, prefix: bytes, written: set[bytes]) -> bool:
        items = self.sections[k][1]
        j = bisect.bisect_left(items, prefix)
        while j < len(items) and items[j].startswith(prefix):
            if items[j] not in written:
                return True
            j += 1
        return False

    def _ok(self, k: int, partial: bytes, written: set[bytes], tok: int) -> bool:
        items = self.item_sets[k]
        if tok in self.stop_ids:  # only 'list' mode ends a list with EOS
            return partial in items and partial not in written
        piece = self.token_bytes[tok]
        if b"|" not in piece and b"]" not in piece:  # the common case: the token stays inside one item
            return self._has_unwritten(k, partial + piece, written)
        seg, seen = partial, set(written)
        for piece in re.split(rb"([|\]])", self.token_bytes[tok]):
            if piece in (b"|", b"]"):
                if seg not in items or seg in seen:
                    return False
                if piece == b"]":
                    return True
                seen.add(seg)
                seg = b""
            else:
                seg += piece
        return self._has_unwritten(k, seg, seen)

    def position(self, generated: Sequence[int]) -> tuple[int, bytes, set[bytes]] | None:
        """(list index, partial item, items written) when ``generated`` ends inside a list, else None."""
        text = b"".join(self.token_bytes[t] for t in generated if t not in self.stop_ids)
        where = self._section(text)
        if where is None:
            return None
        k, body = where
        parts = body.split(b"|")
        return k, parts[-1], set(parts[:-1])

    def banned(
        self,
        generated: Sequence[int],
        allowed: Iterable[int],
        where: tuple[int, bytes, set[bytes]] | None = None,
    ) -> list[int]:
        """The tokens of ``allowed`` that would repeat an item (or can only lead to repeats); ``where`` is
        :meth:`position` of ``generated`` when the caller has it already."""
        where = where or self.position(generated)
        if where is None:
            return []
        k, partial, written = where
        ids = list(allowed)
        if not written:  # nothing written in this list yet: only a token spanning '|' can repeat an item
            tb = self.token_bytes
            return [t for t in ids if b"|" in tb[int(t)] and not self._ok(k, partial, written, int(t))]
        return [t for t in ids if not self._ok(k, partial, written, int(t))]


# --------------------------------------------------------------------------------------------------
# xgrammar plumbing shared by both engines
# --------------------------------------------------------------------------------------------------

_COMPILERS: dict[tuple[int, int, tuple[int, ...]], tuple[Any, Any, list[bytes]]] = {}


def compiler_for(tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> tuple[Any, Any]:
    """(xgrammar GrammarCompiler, TokenizerInfo) for a tokenizer, cached (grammar compiles are cached too)."""
    compiler, info, _ = _compiled(tokenizer, vocab_size, stop_ids)
    return compiler, info


def _compiled(tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> tuple[Any, Any, list[bytes]]:
    import xgrammar as xgr

    key = (id(tokenizer), int(vocab_size), tuple(int(s) for s in stop_ids))
    if key not in _COMPILERS:
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=int(vocab_size), stop_token_ids=list(key[2])
        )
        compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=True)
        _COMPILERS[key] = (compiler, info, token_bytes(info, vocab_size))
    return _COMPILERS[key]


def token_bytes(info: Any, vocab_size: int) -> list[bytes]:
    """Each token id's bytes (special and padding ids: b'')."""
    vocab = list(info.decoded_vocab)
    special = set(info.special_token_ids)
    out = [b"" if i in special else bytes(v) for i, v in enumerate(vocab)]
    return out + [b""] * max(0, int(vocab_size) - len(out))


def _unpack(bitmask: torch.Tensor, vocab_size: int) -> np.ndarray:
    """xgrammar's packed int32 bitmask (little-endian bit order) as a bool array ``[rows, vocab_size]``."""
    return np.unpackbits(bitmask.numpy().view(np.uint8), axis=-1, bitorder="little")[:, :vocab_size].astype(
        bool
    )


class GrammarLogitsProcessor:
    """transformers LogitsProcessor: the row's grammar (xgrammar) plus :class:`DistinctItems`.

    ``specs[p]`` is prompt p's spec (None: unconstrained); ``rows_per_prompt`` rows of the batch belong to
    each prompt (beams or samples). Matchers are kept per generated prefix: a prefix that several beams
    extend is forked, so beam reordering never mixes states. :meth:`result` tells per row whether the
    grammar accepted the whole output ('ok'), it ran out of tokens ('truncated') or a beam took a masked
    token ('invalid').
    """

    def __init__(
        self,
        tokenizer: Any,
        specs: Sequence[AnswerSpec | None],
        rows_per_prompt: int,
        prompt_len: int,
        eos: int,
        pad: int,
        vocab_size: int,
    ) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.compiler, _, self.token_bytes = _compiled(tokenizer, vocab_size, [eos])
        self.grammars = [None if s is None else self.compiler.compile_grammar(answer_ebnf(s)) for s in specs]
        self.filters = [
            None if s is None or s.mode == "single" else DistinctItems(s, self.token_bytes, [eos])
            for s in specs
        ]
        # 'single' mode (K beams -> K names): only each name's canonical tokenization, so that two beams
        # cannot spell one name with different tokens and K beams give K distinct names
        self.canonical = [
            _canonical_paths(tokenizer, s.names, eos) if s is not None and s.mode == "single" else None
            for s in specs
        ]
        self.rows_per_prompt = rows_per_prompt
        self.prompt_len = prompt_len
        self.eos, self.pad = eos, pad
        self.vocab_size = vocab_size
        self._prev: dict[tuple[int, tuple[int, ...]], Any] = {}  # (prompt, generated) -> matcher | None

    def _replay(self, p: int, seq: Sequence[int]) -> Any:
        """A matcher that has accepted ``seq`` (None when the grammar rejects it)."""
        m = self.xgr.GrammarMatcher(self.grammars[p])
        for t in seq:
            if m.is_terminated() or not m.accept_token(int(t)):
                return None
        return m

    def _advance(self, p: int, seq: tuple[int, ...], children: dict[tuple[int, tuple[int, ...]], int]) -> Any:
        """The matcher after ``seq``: the previous step's matcher of ``seq[:-1]`` (forked while other rows
        still extend it) advanced by the last token; replayed from scratch if that prefix is unknown."""
        if not seq:
            return self.xgr.GrammarMatcher(self.grammars[p])
        key = (p, seq[:-1])
        if key not in self._prev:
            return self._replay(p, seq)
        parent = self._prev[key]
        if parent is None or parent.is_terminated():
            return None
        children[key] -= 1
        m = parent if children[key] == 0 else parent.fork()
        return m if m.accept_token(seq[-1]) else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        gen = [tuple(s) for s in input_ids[:, self.prompt_len :].tolist()]
        n = len(gen)
        prompts = [i // self.rows_per_prompt for i in range(n)]
        current: dict[tuple[int, tuple[int, ...]], Any] = {}
        children: dict[tuple[int, tuple[int, ...]], int] = {}
        for key in {(p, seq) for p, seq in zip(prompts, gen, strict=True) if seq}:
            children[(key[0], key[1][:-1])] = children.get((key[0], key[1][:-1]), 0) + 1
        bitmask = self.xgr.allocate_token_bitmask(n, self.vocab_size)
        stop_only: list[int] = []
        free: list[int] = []
        for i, (p, seq) in enumerate(zip(prompts, gen, strict=True)):
            if self.grammars[p] is None:
                free.append(i)
                continue
            if (p, seq) not in current:
                current[(p, seq)] = self._advance(p, seq, children)
            m = current[(p, seq)]
            if m is None or m.is_terminated():
                stop_only.append(i)
            else:
                m.fill_next_token_bitmask(bitmask, i)
        self._prev = current
        for i in free:
            bitmask[i] = -1  # every bit set
        scores = scores.float()
        allowed_np = _unpack(bitmask, scores.shape[-1])
        # a masked_fill over the unpacked bits: xgrammar's CPU apply_token_bitmask kernel was ~10x slower here
        scores = scores.masked_fill(~torch.from_numpy(allowed_np).to(scores.device), float("-inf"))
        for i in stop_only:
            keep = scores[i, [self.eos, self.pad]].clone()
            scores[i] = float("-inf")
            scores[i, [self.eos, self.pad]] = torch.where(torch.isfinite(keep), keep, torch.zeros_like(keep))
        for i, (p, seq) in enumerate(zip(prompts, gen, strict=True)):
            paths = self.canonical[p]
            if paths is not None and i not in stop_only:
                keep = list(paths.get(seq, ()))
                row = torch.full_like(scores[i], float("-inf"))
                row[keep] = scores[i, keep]
                scores[i] = row if keep else scores[i]
            f = self.filters[p]
            if f is None or i in stop_only:
                continue
            where = f.position(seq)
            if where is None:
                continue  # outside a list: nothing can repeat
            allowed = np.flatnonzero(allowed_np[i]).tolist()
            banned = f.banned(seq, allowed, where)
            if banned and len(banned) < len(allowed):
                scores[i, banned] = float("-inf")
        return scores

    def result(self, p: int, generated: Sequence[int]) -> str:
        """'ok' (the grammar accepted the whole output), 'truncated' (out of tokens) or 'invalid'."""
        seq = tuple(generated)
        if self.grammars[p] is None:
            return "ok"
        if seq and seq[-1] in (self.eos, self.pad):
            body = seq[:-1]
            while body and body[-1] == self.pad and self.pad != self.eos:
                body = body[:-1]
        else:
            body = seq
        m = self._replay(p, body)
        if m is None:
            return "invalid"
        if m.is_completed() or m.is_terminated():
            return "ok"
        return "truncated"


def _canonical_paths(tokenizer: Any, names: Sequence[str], eos: int) -> dict[tuple[int, ...], set[int]]:
    """Prefix of a name's canonical token ids -> the tokens that continue it (EOS after a whole name)."""
    paths: dict[tuple[int, ...], set[int]] = {}
    for name in names:
        ids = tuple(tokenizer(name, add_special_tokens=False)["input_ids"])
        for j in range(len(ids)):
            paths.setdefault(ids[:j], set()).add(ids[j])
        paths.setdefault(ids, set()).add(eos)
    return paths


def vllm_spec_args(spec: AnswerSpec) -> dict[str, Any]:
    """The ``SamplingParams.extra_args`` that switch :class:`VLLMDistinctItems` on for a request."""
    return {
        "adprior_answer": {"mode": spec.mode, "names": list(spec.names), "interests": list(spec.interests)}
    }


def _spec_from_args(args: dict[str, Any]) -> AnswerSpec:
    s = args["adprior_answer"]
    return AnswerSpec(s["mode"], tuple(s["names"]), tuple(s["interests"]), 0, 0, 0, 0)


def vllm_logits_processor_class() -> type:
    """The vLLM logits processor class (defined lazily: vLLM is an optional import)."""
    global _VLLM_CLASS
    if _VLLM_CLASS is None:
        _VLLM_CLASS = _define_vllm_class()
    return _VLLM_CLASS


_VLLM_CLASS: type | None = None


def _define_vllm_class() -> type:
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    class _VLLMDistinctItems(AdapterLogitsProcessor):
        """vLLM side of :class:`DistinctItems`: one filter per request that carries ``adprior_answer``."""

        def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
            super().__init__(vllm_config, device, is_pin_memory)
            from transformers import AutoTokenizer

            cfg = vllm_config.model_config
            tok = AutoTokenizer.from_pretrained(cfg.tokenizer)
            self.vocab_size = int(cfg.get_vocab_size())
            self.eos = int(tok.eos_token_id)
            self.token_bytes = _compiled(tok, self.vocab_size, [self.eos])[2]

        def is_argmax_invariant(self) -> bool:
            return False

        def new_req_logits_processor(self, params: Any) -> Any:
            args = getattr(params, "extra_args", None) or {}
            if "adprior_answer" not in args or args["adprior_answer"]["mode"] == "single":
                return None
            f = DistinctItems(_spec_from_args(args), self.token_bytes, [self.eos])

            def apply(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
                where = f.position(output_ids)
                if where is None:
                    return logits  # outside a list
                allowed = torch.nonzero(torch.isfinite(logits)).flatten().tolist()
                banned = f.banned(output_ids, allowed, where)
                if banned and len(banned) < len(allowed):
                    logits[banned] = float("-inf")
                return logits

            return apply

    _VLLMDistinctItems.__name__ = "VLLMDistinctItems"
    _VLLMDistinctItems.__qualname__ = "VLLMDistinctItems"
    return _VLLMDistinctItems


def __getattr__(name: str) -> Any:  # ``llm_predictor.infer.constrain:VLLMDistinctItems`` for vLLM's loader
    if name == "VLLMDistinctItems":
        return vllm_logits_processor_class()
    raise AttributeError(name)
