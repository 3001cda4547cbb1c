"""The semantic-ID string format and the SID token vocabulary (paper 3.5).

A SID is one token per level, level letter + code, e.g. ``<a_12><b_3><c_40><d_0>`` (the last level is the
collision level that makes every SID unique, see :func:`llm_predictor.sid.rqvae.dedup_codes`).
:data:`SID_ITEM_RE` recognises such strings; the prompt builder (``llm_predictor.data.prompts``) keeps them
verbatim in the ``SID Sequences [...]`` field. Continued pre-training adds :func:`sid_tokens` to the model's
vocabulary.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

LEVEL_LETTERS = string.ascii_lowercase  # level i is written with the i-th letter (collision level included)
# A whole semantic ID (1 to 26 levels of ``<letter_code>``), as written by :func:`sid_string`.
SID_ITEM_RE = re.compile(r"(?:<[a-z]_\d{1,6}>){1,26}")


def sid_token(level: int, code: int) -> str:
    """The token of ``code`` at ``level`` (0-based): ``<a_12>`` for level 0, code 12."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level {level} out of range (at most {len(LEVEL_LETTERS)} levels)")
    if code < 0:
        raise ValueError(f"negative code {code}")
    return f"<{LEVEL_LETTERS[level]}_{int(code)}>"


def sid_string(codes: Sequence[int]) -> str:
    """The SID of a code tuple (collision level last): ``(12, 3, 40, 0)`` -> ``<a_12><b_3><c_40><d_0>``."""
    return "".join(sid_token(i, c) for i, c in enumerate(codes))


def parse_sid(sid: str) -> list[int]:
    """Codes of a SID string (inverse of :func:`sid_string`)."""
    if not SID_ITEM_RE.fullmatch(sid):
        raise ValueError(f"not a SID string: {sid!r}")
    parts = sid[1:-1].split("><")
    codes = []
    for i, part in enumerate(parts):
        letter, code = part.split("_")
        if letter != LEVEL_LETTERS[i]:
            raise ValueError(f"level {i} of {sid!r} has letter {letter!r}, expected {LEVEL_LETTERS[i]!r}")
        codes.append(int(code))
    return codes


def sid_tokens(levels: int, codebook_size: int, collision_size: int) -> list[str]:
    """Every SID token: ``levels`` levels of ``codebook_size`` codes, then the collision level of
    ``collision_size`` codes (its letter follows the last semantic level)."""
    toks = [sid_token(lvl, c) for lvl in range(levels) for c in range(codebook_size)]
    return toks + [sid_token(levels, c) for c in range(max(collision_size, 1))]
