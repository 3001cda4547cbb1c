"""Which advertisers a user's free texts name (top brands, URLs, searches, conversion titles).

Names have one normaliser, the resolver's :func:`llm_predictor.data.resolver.normalize_name` (Unicode-aware:
"Café Müller" and "ソニー" keep their letters; "the" and corporate suffixes dropped). An advertiser's match
keys are its normalised name and aliases and its domain stem (:func:`~llm_predictor.data.resolver.domain_stem`).
A text is cut into words, every word normalised the same way, and every run of 1 to :data:`MAX_GRAM`
consecutive words, joined, is looked up among the keys: "The North Face jacket" finds 'northface'.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from llm_predictor.data.resolver import domain_host, domain_stem, normalize_name
from llm_predictor.eval.rows import as_list

TEXT_FIELDS: tuple[str, ...] = (
    "top_brands",
    "offsite_urls",
    "offsite_searches",
    "onsite_searches",
    "attributed_conversions",
    "matched_conversions",
)
MAX_GRAM = 4  # most consecutive words joined into one lookup
MIN_KEY_CHARS = 3  # shorter keys ('hm', 'co') would match noise
MAX_WORDS = 40  # words of one text item that are scanned

# Cutting free text (a search, a URL, a conversion title) into words is a different job from normalising a
# name, so it has its own pattern: split at anything but letters and digits of any script, except the
# characters normalize_name rewrites before it splits ('&' and '+' -> 'and', apostrophes dropped), which stay
# inside their word. Each word is then normalised by normalize_name, so the words of a name join to its key.
_WORD_SPLIT_RE = re.compile(r"(?:[^\w&+'’‘`´]|_)+")


@lru_cache(maxsize=1 << 16)
def _word_key(word: str) -> str:
    return normalize_name(word)


def text_tokens(text: Any) -> list[str]:
    """The words of a free text, each normalised as a name (:func:`normalize_name`); empty words dropped."""
    words = _WORD_SPLIT_RE.split(html.unescape(str(text)))
    return [k for k in (_word_key(w) for w in words if w) if k]


def name_keys(name: Any, aliases: Any = None, domain: Any = None) -> set[str]:
    """Match keys of an advertiser: its name and aliases as :func:`normalize_name` keys, and its domain stem."""
    keys = {normalize_name(text) for text in [name, *as_list(aliases)] if text is not None}
    if isinstance(domain, str) and domain:
        host = domain_host(domain)
        if host:
            keys.add(domain_stem(host))
    return {k for k in keys if len(k) >= MIN_KEY_CHARS}


class NameIndex:
    """Advertisers by match key (:func:`name_keys`); :meth:`find` lists those a text names."""

    def __init__(self, rows: Iterable[dict[str, Any]] = ()) -> None:
        self.keys: dict[str, list[int]] = defaultdict(list)
        for r in rows:
            self.add(int(r["advertiser_id"]), r.get("name"), r.get("aliases"), r.get("domain"))

    def add(self, advertiser_id: int, name: Any, aliases: Any = None, domain: Any = None) -> None:
        """Index one advertiser under its keys."""
        for k in name_keys(name, aliases, domain):
            self.keys[k].append(advertiser_id)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def find(self, text: Any) -> set[int]:
        """Advertisers whose key is spelled by 1 to MAX_GRAM consecutive words of the text's first MAX_WORDS."""
        toks = text_tokens(text)[:MAX_WORDS]
        found: set[int] = set()
        for n in range(1, MAX_GRAM + 1):
            for j in range(len(toks) - n + 1):
                hit = self.keys.get("".join(toks[j : j + n]))
                if hit:
                    found.update(hit)
        return found
