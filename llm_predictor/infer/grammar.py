"""The answer grammar (paper A.3): what one row's answer may hold, and the one EBNF both engines compile.

:func:`answer_spec` cleans one row's allowed advertiser names and the interest vocabulary into an
:class:`AnswerSpec`; :func:`answer_ebnf` turns it into the one EBNF grammar that both engines use:

* ``mode='answer'`` (inference, the GRPO format)::

      <answer>\\n<interests>\\n[i1|...|ik]\\n</interests>\\n<advertiser_names>\\n[a1|...|an]\\n</advertiser_names>\\n</answer>

  with ``min_interests <= k <= max_interests`` interests from the vocabulary and ``min_names <= n <= max_names``
  names from the row's pool (``min_names = max_names = 20`` by default: exactly 20);
* ``mode='list'``: ``a1|...|an`` then EOS (the 20-name SFT format);
* ``mode='single'``: one name then EOS (the 1-advertiser SFT format; K beams give K candidates).

Interests come from a **vocabulary**, the catalogue's category taxonomy (:func:`interest_vocabulary`), not
free text: the ranking feature ``llm_interest_match`` compares an interest with the candidate advertiser's
category path, which only means something when interests are category paths.

A context-free grammar cannot say "20 *distinct* names" without enumerating subsets, so the grammar says
"20 names of the pool"; the repeat ban and the way each engine applies grammar and ban (xgrammar) live in
:mod:`llm_predictor.infer.constrain`.

Items a list cannot hold unambiguously are dropped from the spec and reported (``AnswerSpec.dropped``):
empty names, names with the separator ``|``, brackets or a newline, and case-insensitive repeats (the
parser de-duplicates case-insensitively). ``'&'``, ``'<'`` and non-Latin letters are kept: the parser
escapes everything but the format's own tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llm_predictor.data.templates import ANSWER_HEAD, ANSWER_MID, ANSWER_TAIL

SEPARATOR = "|"
MODES = ("answer", "list", "single")
_BAD_ITEM_CHARS = frozenset("|[]\n\r")


def interest_label(category: str) -> str:
    """A category path ``'Apparel > Athletic'`` as an interest: ``'Apparel / Athletic'`` ('>' is markup
    to a parser and '|' separates items, so levels are joined by ' / ')."""
    levels = [" ".join(level.split()) for level in re.split(r"[>/|\[\]\n\r]", str(category))]
    return " / ".join(level for level in levels if level)


def interest_vocabulary(categories: Iterable[Any]) -> list[str]:
    """The interest vocabulary: every distinct category path (as :func:`interest_label`), sorted."""
    labels = {interest_label(c) for c in categories if c is not None and str(c).strip()}
    return sorted(label for label in labels if label)


def clean_items(items: Iterable[Any]) -> tuple[list[str], list[str]]:
    """(usable items, dropped items): whitespace collapsed, order kept, case-insensitive repeats dropped."""
    kept: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for raw in items:
        item = " ".join(str(raw).split()) if raw is not None else ""
        if not item or _BAD_ITEM_CHARS & set(item):
            dropped.append(str(raw))
            continue
        key = item.casefold()
        if key in seen:
            dropped.append(item)
            continue
        seen.add(key)
        kept.append(item)
    return kept, dropped


@dataclass(frozen=True)
class AnswerSpec:
    """What one row's answer may hold."""

    mode: str  # 'answer' | 'list' | 'single'
    names: tuple[str, ...]  # allowed advertiser names, cleaned (see clean_items)
    interests: tuple[str, ...]  # allowed interests (mode 'answer'), cleaned
    min_names: int  # fewest names (== max_names by default: exactly that many)
    max_names: int  # most names (the requested count, capped by the pool size)
    min_interests: int  # fewest interests (0 only when the vocabulary is empty)
    max_interests: int  # most interests
    dropped: tuple[str, ...] = ()  # items removed by clean_items
    requested_names: int = 20  # names the caller asked for (max_names is less when the pool is short)

    @property
    def problem(self) -> str | None:
        """Why this row cannot get a full answer: 'empty_pool', 'short_pool', or None."""
        if not self.names:
            return "empty_pool"
        if self.mode != "single" and len(self.names) < self.requested_names:
            return "short_pool"
        return None


def answer_spec(
    names: Iterable[Any],
    interests: Iterable[Any] = (),
    *,
    mode: str = "answer",
    max_names: int = 20,
    min_names: int | None = None,
    max_interests: int = 5,
    min_interests: int = 1,
) -> AnswerSpec:
    """The spec of one row. ``min_names`` None means exactly ``max_names`` (capped by the pool)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if max_names < 1 or max_interests < 0 or min_interests < 0:
        raise ValueError("max_names must be >= 1, max_interests and min_interests >= 0")
    kept, dropped = clean_items(names)
    vocab, dropped_i = clean_items(interests) if mode == "answer" else ([], [])
    hi = 1 if mode == "single" else min(max_names, len(kept))
    lo = min(hi, max(1, min_names if min_names is not None else max_names))
    hi_i = min(max_interests, len(vocab))
    lo_i = min(hi_i, min_interests)
    return AnswerSpec(
        mode,
        tuple(kept),
        tuple(vocab),
        lo,
        hi,
        lo_i,
        hi_i,
        tuple(dropped + dropped_i),
        1 if mode == "single" else max_names,
    )


def _literal(text: str) -> str:
    """An EBNF string literal."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    out = out.replace("\t", "\\t")
    return f'"{out}"'


def _list_rule(item: str, lo: int, hi: int) -> str:
    """``item ("|" item){lo-1,hi-1}``; lo may be 0 (then the list may be empty)."""
    if hi == 0:
        return '""'
    rest = f"({_literal(SEPARATOR)} {item}){{{max(lo - 1, 0)},{hi - 1}}}" if hi > 1 else ""
    body = f"{item} {rest}".strip()
    return body if lo >= 1 else f"({body})?"


def answer_ebnf(spec: AnswerSpec) -> str:
    """The xgrammar EBNF grammar of ``spec`` (raises ValueError for an empty pool)."""
    if not spec.names:
        raise ValueError("an answer grammar needs at least one allowed name (empty pool)")
    lines = ["name ::= " + " | ".join(_literal(n) for n in spec.names)]
    if spec.mode == "single":
        root = "name"
    elif spec.mode == "list":
        root = _list_rule("name", spec.min_names, spec.max_names)
    else:
        if spec.interests:
            lines.append("interest ::= " + " | ".join(_literal(i) for i in spec.interests))
        interests = _list_rule("interest", spec.min_interests, spec.max_interests)
        names = _list_rule("name", spec.min_names, spec.max_names)
        root = f"{_literal(ANSWER_HEAD)} {interests} {_literal(ANSWER_MID)} {names} {_literal(ANSWER_TAIL)}"
    return "\n".join([f"root ::= {root}", *lines]) + "\n"


def per_row_names(
    allowed_names: Sequence[Sequence[str]] | Sequence[str] | None, n: int
) -> list[Sequence[str]] | None:
    """One pool per prompt: ``allowed_names`` as given (one list per prompt), or one shared list repeated
    ``n`` times; None stays None."""
    if allowed_names is None:
        return None
    if len(allowed_names) and all(isinstance(a, str) for a in allowed_names):
        shared = list(allowed_names)  # one pool for every prompt
        return [shared] * n
    if len(allowed_names) != n:
        raise ValueError(f"allowed_names has {len(allowed_names)} rows for {n} prompts")
    return [list(a) for a in allowed_names]
