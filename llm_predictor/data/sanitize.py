"""Sanitising user-supplied text before it enters a prompt: user text is data, never instructions.

:func:`sanitize_text` removes markup, control characters and the template's delimiter characters and
quotes instruction-like phrases, so that no field value can add a header, an XML tag or a bracket to a
prompt; :func:`clean_list` applies it to one list field of an example (newest first, capped, de-duplicated).
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llm_predictor.sid.tokens import SID_ITEM_RE

_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
_TAG_RE = re.compile(r"</?[A-Za-z!?][^<>]{0,200}>")  # HTML/XML-like tags; other '<', '>' go later
_DELIMS = str.maketrans({c: " " for c in "|[]#*`<>{}"})
_WS_RE = re.compile(r"\s+")
_INJECTION_RE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}?"
    r"\b(?:instructions?|above|previous|prior|earlier|rules|prompt|system|everything)\b"
    r"|\b(?:system|assistant|developer)\s*:"
    r"|\byou\s+are\s+now\b"
    r"|\bnew\s+instructions?\b"
    r"|\bpretend\s+(?:to\s+be|you)\b"
    r"|\bjailbreak\b",
    re.IGNORECASE,
)
# Examples-table list columns whose items may be semantic IDs: an item that is exactly a SID as written by
# llm_predictor.sid.tokens (SID_ITEM_RE, e.g. "<a_12><b_3><c_40><d_0>") is kept verbatim (our own codes, which
# the tag stripping below would delete); anything else there is sanitised like any other user text.
SID_FIELDS: frozenset[str] = frozenset({"sid_sequences"})


def is_missing(value: object) -> bool:
    """None, NaN, pandas NA/NaT: a field the row does not have."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(value != value)  # pandas NA / NaT / numpy nan
    except (TypeError, ValueError):
        return False


def _truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters on a word boundary, ending with "…"."""
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return text[:max_chars]
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _sanitize(value: object, max_chars: int, allow_sid: bool = False) -> tuple[str, bool]:
    """Sanitised text of one item and whether it was quoted as instruction-like.

    With ``allow_sid``, a string that is exactly a semantic ID (:data:`SID_ITEM_RE`) is returned unchanged.
    """
    if is_missing(value):
        return "", False
    if allow_sid and isinstance(value, str) and SID_ITEM_RE.fullmatch(value):
        return value, False
    # Bound the work on pathological inputs before the per-character pass.
    text = unicodedata.normalize("NFKC", str(value)[: max(max_chars, 1) * 8])
    text = html.unescape(text)  # "&lt;answer&gt;" must not survive as a tag-like entity
    text = unicodedata.normalize("NFKC", text)
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in _DROP_CATEGORIES
    )
    text = _TAG_RE.sub(" ", text)
    text = text.translate(_DELIMS)
    text = _WS_RE.sub(" ", text).strip()
    if not text:
        return "", False
    if _INJECTION_RE.search(text):
        # Instruction-like text is kept only as a quoted string literal.
        text = _truncate(text.replace('"', "'"), max(max_chars - 2, 1))
        return f'"{text}"', True
    return _truncate(text, max_chars), False


def sanitize_text(value: object, max_chars: int = 120) -> str:
    """Sanitise one user-supplied item so that it is plain data inside the prompt.

    NFKC-normalises, unescapes HTML entities, removes control/format/private/unassigned characters,
    strips ``<...>`` tags and any remaining ``<``/``>``, replaces the template's delimiter characters
    (``| [ ] # * ` { }``) by spaces, collapses whitespace, cuts to ``max_chars`` on a word boundary and
    wraps instruction-like phrases ("ignore the above", "system:", "you are now") in double quotes.
    Returns "" for missing values or text that is empty after sanitising.
    """
    return _sanitize(value, max_chars)[0]


def as_list(value: object) -> list[Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return [value]


@dataclass
class _CleanList:
    items: list[str]  # sanitised, de-duplicated, newest first, at most the field's cap
    dropped_sanitize: int  # empty after sanitising or duplicate
    dropped_cap: int  # beyond the field's item cap (never sanitised)
    n_quoted: int  # instruction-like items rendered as quoted data


def clean_list(values: Iterable[Any], max_items: int, max_chars: int, allow_sid: bool = False) -> _CleanList:
    values = list(values)
    out: list[str] = []
    seen: set[str] = set()
    dropped = quoted = 0
    consumed = 0
    for value in values:
        if len(out) >= max_items:
            break
        consumed += 1
        text, was_quoted = _sanitize(value, max_chars, allow_sid)
        key = text.strip('"').casefold()
        if not text or key in seen:
            dropped += 1
            continue
        seen.add(key)
        out.append(text)
        quoted += was_quoted
    return _CleanList(out, dropped, len(values) - consumed, quoted)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
