"""Generation with a Hugging Face causal LM (CPU or GPU), optionally constrained to a catalogue.

:func:`generate` applies the tokenizer's chat template to each prompt (one user message,
``add_generation_prompt=True``), left-pads a batch and decodes greedily, with beam search or by sampling.
For single-advertiser (SFT) models, K beams with ``num_return_sequences=K`` give the K candidates of the
paper's Table 2 ("SFT + beam search"); K samples give "SFT + sampling".

Catalogue-constrained decoding
------------------------------
With ``DecodeConfig.constrained`` the model can only write names from the row's allowed pool (the
user's active advertisers ∪ the preset pool; rows differ, so every row gets its own token trie). A
:class:`transformers.LogitsProcessor` masks every token that does not continue a path of the trie:

* ``mode='single'``: exactly one name, then EOS.
* ``mode='list'``: names separated by ``separator`` ('|'), at most ``max_names``, then EOS. After a
  complete name the model may write the separator (start another name) or EOS; a name already written
  cannot be written again; EOS comes only after ``min_names`` names (unless the pool or the token
  budget runs out first). The plain text ``name|name|...`` is returned; wrap it with
  :func:`wrap_as_answer` where the ``<answer>`` XML is expected.

Tokenization of names (the context a name is emitted in): the *first* name of a completion is
tokenized on its own, ``tokenizer(name, add_special_tokens=False)``: it follows the chat template's
``"<|im_start|>assistant\\n"``, and byte-level BPE pre-tokenisers never merge a newline with the
letters after it, so this is exactly how an SFT target "Nike" is tokenized after the prompt. Every
*later* name is tokenized together with its separator, ``tokenizer("|" + name)``, and that whole
sequence (separator tokens included) is a path of a second trie; so a tokenizer that merges the
separator with the name's first characters is handled too. The previous name's tokens are not
re-tokenized across the boundary, which differs from the canonical tokenization of the joined text only
for names that end with punctuation that BPE may merge with '|' (e.g. "Yahoo!|"); the output stays
valid either way. Names are recovered from the trie path, not by decoding the tokens, so the returned
strings are exactly the allowed names even for tokenizers whose decode does not round-trip.

A trie path is offered only if some name below it that has not been written yet can still be finished,
followed by EOS, within the remaining ``max_new_tokens``; so a constrained completion is never cut in
the middle of a name. Beam search can still keep a beam that took a masked token (when fewer
continuations than beams exist); such candidates are dropped from the result, so a row can return
fewer than K candidates.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from llm_predictor.prompts import chat_messages

log = logging.getLogger(__name__)

STRATEGIES = ("greedy", "beam", "sample")
MODES = ("single", "list")


@dataclass
class DecodeConfig:
    """How completions are generated."""

    strategy: str = "greedy"  # 'greedy' | 'beam' | 'sample'
    num_beams: int = 1  # beams for 'beam' (K beams and num_return_sequences=K -> K candidates)
    num_return_sequences: int | None = None  # completions per prompt; None: num_beams for 'beam', else 1
    temperature: float = 1.0  # 'sample' only: softmax temperature
    top_p: float = 1.0  # 'sample' only: nucleus mass (1.0 = off)
    top_k: int = 0  # 'sample' only: keep the k most likely tokens (0 = off; transformers' default is 50)
    max_new_tokens: int = 256  # generated tokens per completion (a 20-name XML answer needs ~150-250)
    batch_size: int = 8  # prompts per forward batch (each expands to num_beams / num_return_sequences rows)
    constrained: bool = False  # restrict the output to names of the row's allowed pool (a token trie)
    mode: str = "list"  # constrained output: 'single' (one name) | 'list' (names joined by separator)
    max_names: int = 20  # 'list' mode: most names in one completion
    min_names: int = 1  # 'list' mode: no EOS before this many names (unless the pool or budget runs out)
    separator: str = "|"  # 'list' mode: between names (the paper's output format)
    seed: int = 0  # torch / python RNG seed set once at the start of generate (sampling)
    length_penalty: float = 1.0  # 'beam' only: exponent on the length in beam scores

    def expand(self) -> int:
        """Completions per prompt (rows per prompt inside generate)."""
        if self.num_return_sequences is not None:
            return int(self.num_return_sequences)
        return int(self.num_beams) if self.strategy == "beam" else 1

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        n = self.expand()
        if n < 1 or self.num_beams < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("num_beams, num_return_sequences, batch_size and max_new_tokens must be >= 1")
        if self.strategy == "greedy" and n != 1:
            raise ValueError("greedy decoding returns one completion; use 'beam' or 'sample' for K candidates")
        if self.strategy == "beam" and n > self.num_beams:
            raise ValueError(f"num_return_sequences ({n}) cannot exceed num_beams ({self.num_beams})")
        if self.mode == "list" and (not self.separator or not 1 <= self.min_names <= self.max_names):
            raise ValueError("list mode needs a non-empty separator and 1 <= min_names <= max_names")


def wrap_as_answer(names: Sequence[str], interests: Sequence[str] = ()) -> str:
    """The inference output format (paper A.3) around given names, as :func:`parse_answer` reads it."""
    return (
        "<answer>\n"
        f"<interests>\n[{'|'.join(interests)}]\n</interests>\n"
        f"<advertiser_names>\n[{'|'.join(names)}]\n</advertiser_names>\n"
        "</answer>"
    )


# --------------------------------------------------------------------------------------------------
# Token tries
# --------------------------------------------------------------------------------------------------


class NameTokenizer:
    """Cached tokenizations of names: alone (first name) and after the separator (later names)."""

    def __init__(self, tokenizer: Any, separator: str = "|") -> None:
        self.tokenizer = tokenizer
        self.separator = separator
        self._first: dict[str, tuple[int, ...]] = {}
        self._cont: dict[str, tuple[int, ...]] = {}

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def first(self, name: str) -> tuple[int, ...]:
        if name not in self._first:
            self._first[name] = self._encode(name)
        return self._first[name]

    def cont(self, name: str) -> tuple[int, ...]:
        if name not in self._cont:
            self._cont[name] = self._encode(self.separator + name)
        return self._cont[name]


class NameTrie:
    """Token tries over one row's allowed names: node 0 roots the first name, node 1 later names.

    ``ends[node]`` lists (name index, tokens from ``node`` to that name's terminal) for every name whose
    path passes through ``node``, so the decoder can check cheaply that a path still leads to an
    unwritten name within the token budget.
    """

    FIRST, CONT = 0, 1

    def __init__(self, names: Sequence[str], name_tok: NameTokenizer, list_mode: bool) -> None:
        self.names: list[str] = []
        seen: set[str] = set()
        for raw in names:
            name = str(raw).strip() if raw is not None else ""
            if not name or name in seen:
                continue
            if list_mode and name_tok.separator in name:
                continue  # cannot be told apart from two names
            seen.add(name)
            self.names.append(name)
        self.children: list[dict[int, int]] = [{}, {}]
        self.terminal: list[int] = [-1, -1]
        self.ends: list[list[tuple[int, int]]] = [[], []]
        for idx, name in enumerate(self.names):
            self._add(self.FIRST, name_tok.first(name), idx)
            if list_mode:
                self._add(self.CONT, name_tok.cont(name), idx)

    def _add(self, root: int, tokens: Sequence[int], idx: int) -> None:
        if not tokens:
            return
        node = root
        self.ends[node].append((idx, len(tokens)))
        for depth, tok in enumerate(tokens, start=1):
            child = self.children[node].get(tok)
            if child is None:
                child = len(self.children)
                self.children[node][tok] = child
                self.children.append({})
                self.terminal.append(-1)
                self.ends.append([])
            node = child
            self.ends[node].append((idx, len(tokens) - depth))
        if self.terminal[node] < 0:  # two names with one tokenization cannot both be reached
            self.terminal[node] = idx


@dataclass(frozen=True)
class _State:
    """Where one generated sequence is in its row's trie."""

    node: int = NameTrie.FIRST
    emitted: tuple[int, ...] = ()  # names completed (followed by separator or EOS), in order
    done: bool = False  # EOS written (or the sequence left the trie)
    valid: bool = True  # False once a masked token was taken (beam search can do that)


@dataclass
class _RowState:
    trie: NameTrie
    cache: dict[tuple[int, ...], _State] = field(default_factory=dict)


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token that does not continue the row's name trie (see the module docstring)."""

    def __init__(
        self,
        tries: Sequence[NameTrie],
        expand: int,
        prompt_len: int,
        eos_token_id: int,
        pad_token_id: int,
        max_new_tokens: int,
        list_mode: bool,
        max_names: int,
        min_names: int = 1,
    ) -> None:
        self.rows = [_RowState(t) for t in tries]
        self.expand = expand
        self.prompt_len = prompt_len
        self.eos = eos_token_id
        self.pad = pad_token_id
        self.max_new_tokens = max_new_tokens
        self.list_mode = list_mode
        self.max_names = max_names
        self.min_names = min_names

    # --- state machine ------------------------------------------------------------------------------
    def _step(self, trie: NameTrie, s: _State, tok: int) -> _State:
        if s.done:
            return s
        if tok == self.eos:
            t = trie.terminal[s.node]
            ok = s.valid and t >= 0 and t not in s.emitted
            return _State(s.node, (*s.emitted, t) if ok else s.emitted, True, ok)
        child = trie.children[s.node].get(tok)
        if child is not None:
            return _State(child, s.emitted, False, s.valid)
        t = trie.terminal[s.node]
        if self.list_mode and t >= 0 and t not in s.emitted:
            child = trie.children[NameTrie.CONT].get(tok)
            if child is not None:
                return _State(child, (*s.emitted, t), False, s.valid)
        return _State(s.node, s.emitted, True, False)

    def state(self, row: int, generated: Sequence[int]) -> _State:
        """State after ``generated`` (memoised per prefix; beams share prefixes)."""
        rs = self.rows[row]
        key = tuple(generated)
        if key in rs.cache:
            return rs.cache[key]
        # Find the longest cached prefix, then walk forward.
        i = len(key)
        while i > 0 and key[:i] not in rs.cache:
            i -= 1
        s = rs.cache.get(key[:i], _State())
        for j in range(i, len(key)):
            s = self._step(rs.trie, s, key[j])
            rs.cache[key[: j + 1]] = s
        rs.cache[key] = s
        return s

    def allowed(self, trie: NameTrie, s: _State, remaining: int) -> list[int]:
        """Tokens that keep the sequence inside the trie with an unwritten name finishable in budget."""
        if s.done:
            return [self.pad, self.eos]
        emitted = set(s.emitted)

        def reachable(node: int, skip: set[int]) -> bool:
            # choosing the token costs 1, then d tokens to the terminal, then EOS
            return any(idx not in skip and d + 2 <= remaining for idx, d in trie.ends[node])

        out = [tok for tok, child in trie.children[s.node].items() if reachable(child, emitted)]
        t = trie.terminal[s.node]
        if t >= 0 and t not in emitted:
            more: list[int] = []
            if self.list_mode and len(s.emitted) + 1 < self.max_names:
                skip = emitted | {t}
                inside = set(trie.children[s.node])
                more = [
                    tok
                    for tok, child in trie.children[NameTrie.CONT].items()
                    if tok not in inside and reachable(child, skip)
                ]
            # EOS once min_names are written, or when no further name fits the pool or the budget
            if not more or len(s.emitted) + 1 >= self.min_names:
                out.append(self.eos)
            out.extend(more)
        return out or [self.eos]

    def names(self, row: int, generated: Sequence[int]) -> list[str] | None:
        """Names written by a finished sequence (None if it left the trie)."""
        gen = list(generated)
        s = self.state(row, gen)
        if not s.done:  # ran out of tokens: close it as if EOS came next
            s = self._step(self.rows[row].trie, s, self.eos)
        if not s.valid:
            return None
        trie = self.rows[row].trie
        return [trie.names[i] for i in s.emitted]

    # --- LogitsProcessor ----------------------------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        gen = input_ids[:, self.prompt_len :].tolist()
        remaining = self.max_new_tokens - input_ids.shape[1] + self.prompt_len
        mask = torch.full_like(scores, float("-inf"))
        for i, seq in enumerate(gen):
            row = i // self.expand
            s = self.state(row, seq)
            allowed = self.allowed(self.rows[row].trie, s, remaining)
            mask[i, allowed] = 0.0
        return scores + mask


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def chat_texts(tokenizer: Any, prompts: Sequence[str]) -> list[str]:
    """Prompts as chat-template text (one user message, generation prompt added)."""
    if getattr(tokenizer, "chat_template", None):
        return [
            tokenizer.apply_chat_template(chat_messages(p), tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    return list(prompts)


def _per_row_names(
    allowed_names: Sequence[Sequence[str]] | Sequence[str] | None, n: int
) -> list[Sequence[str]] | None:
    if allowed_names is None:
        return None
    if len(allowed_names) and all(isinstance(a, str) for a in allowed_names):
        shared = list(allowed_names)  # one pool for every prompt
        return [shared] * n
    if len(allowed_names) != n:
        raise ValueError(f"allowed_names has {len(allowed_names)} rows for {n} prompts")
    return [list(a) for a in allowed_names]


def _eos_pad(tokenizer: Any, model: Any) -> tuple[int, int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = model.generation_config.eos_token_id
        if isinstance(eos, list):
            eos = eos[0]
    if eos is None:
        raise ValueError("the tokenizer and the model define no EOS token")
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = eos
    return int(eos), int(pad)


def _generate_kwargs(cfg: DecodeConfig, eos: int, pad: int) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "num_return_sequences": cfg.expand(),
        "eos_token_id": eos,
        "pad_token_id": pad,
    }
    if cfg.strategy == "sample":
        kw.update(do_sample=True, num_beams=1, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    elif cfg.strategy == "beam":
        kw.update(
            do_sample=False,
            num_beams=cfg.num_beams,
            early_stopping="never",
            length_penalty=cfg.length_penalty,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    else:
        kw.update(do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None)
    return kw


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    cfg: DecodeConfig | None = None,
    allowed_names: list[list[str]] | list[str] | None = None,
) -> list[list[str]]:
    """Completions per prompt: ``cfg.expand()`` of them (1 for greedy; K for K beams or K samples).

    ``allowed_names``: per prompt a list of names, or one list shared by all prompts; required with
    ``cfg.constrained``, where every completion is ``name`` ('single') or ``name|name|...`` ('list'),
    names from the prompt's list only. Invalid constrained candidates (possible with beam search) are
    dropped, as are duplicates among one prompt's candidates in 'single' mode.
    """
    cfg = cfg or DecodeConfig()
    cfg.validate()
    if cfg.constrained and allowed_names is None:
        raise ValueError("constrained decoding needs allowed_names")
    per_row = _per_row_names(allowed_names, len(prompts)) if cfg.constrained else None
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    eos, pad = _eos_pad(tokenizer, model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = pad
    name_tok = NameTokenizer(tokenizer, cfg.separator) if cfg.constrained else None
    list_mode = cfg.mode == "list"
    expand = cfg.expand()
    texts = chat_texts(tokenizer, prompts)
    device = getattr(model, "device", torch.device("cpu"))
    was_training = model.training
    model.eval()
    out: list[list[str]] = []
    try:
        for start in tqdm(range(0, len(texts), cfg.batch_size), desc="generate", unit="batch", disable=None,
                          total=math.ceil(len(texts) / cfg.batch_size)):
            chunk = texts[start : start + cfg.batch_size]
            enc = tokenizer(
                chunk, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt"
            )
            enc = {k: v.to(device) for k, v in enc.items()}
            prompt_len = enc["input_ids"].shape[1]
            kw = _generate_kwargs(cfg, eos, pad)
            proc = None
            if per_row is not None and name_tok is not None:
                tries = [NameTrie(names, name_tok, list_mode) for names in per_row[start : start + len(chunk)]]
                rows_per_prompt = cfg.num_beams if cfg.strategy == "beam" else expand  # beams run as rows
                proc = TrieLogitsProcessor(
                    tries, rows_per_prompt, prompt_len, eos, pad, cfg.max_new_tokens, list_mode, cfg.max_names,
                    cfg.min_names,
                )
                kw["logits_processor"] = LogitsProcessorList([proc])
            with torch.no_grad():
                seqs = model.generate(**enc, **kw)
            gen = seqs[:, prompt_len:].tolist()
            for b in range(len(chunk)):
                cands: list[str] = []
                for j in range(expand):
                    ids = gen[b * expand + j]
                    if proc is None:
                        cands.append(
                            tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                        )
                        continue
                    ids = _strip_after_eos(ids, eos)
                    names = proc.names(b, ids)
                    if names is None:
                        continue
                    text = cfg.separator.join(names) if list_mode else (names[0] if names else "")
                    if text and (list_mode or text not in cands):
                        cands.append(text)
                out.append(cands)
    finally:
        if was_training:
            model.train()
    return out


def _strip_after_eos(ids: list[int], eos: int) -> list[int]:
    """Generated ids up to and including the first EOS (the rest is padding)."""
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def load_model(path: str | Any, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) from a local HF folder; device 'auto' = cuda if available; bf16 on GPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype).to(dev)
    model.eval()
    return model, tok
