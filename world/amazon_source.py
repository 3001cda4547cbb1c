"""Reading the amazon-scientific JSON files (:mod:`world.amazon`) and normalising their text.

* Text: :func:`clean_text` (HTML entities unescaped, whitespace collapsed), :func:`brand_key` (the
  merge key of brand spellings), :func:`category_path` ('A,B,C' -> 'A > B > C').
* Files: :func:`read_items` (``Scientific.item.json``) and :func:`read_inter`
  (``Scientific.inter.json``), checked record by record; every error names the file and the key.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


def clean_text(raw: str) -> str:
    """HTML entities unescaped, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(html.unescape(raw).split())


def brand_key(raw: str) -> str:
    """Merge key of a brand: brands equal up to case, whitespace and HTML entities share it."""
    return clean_text(raw).casefold()


def category_path(raw: str) -> str | None:
    """'A,B,C' -> 'A > B > C' (parts unescaped and stripped); None when there is no category."""
    parts = [clean_text(p) for p in raw.split(",")]
    parts = [p for p in parts if p]
    return " > ".join(parts) if parts else None


# --------------------------------------------------------------------------------------------
# reading and checking the JSON


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def _int_key(path: Path, kind: str, key: str) -> int:
    try:
        value = int(key)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {kind} key {key!r} is not an integer index") from None
    if value < 0:
        raise ValueError(f"{path}: {kind} key {key!r} is negative")
    return value


def read_items(path: Path) -> dict[int, dict[str, str]]:
    """Scientific.item.json as {item index: {title, brand, categories}} (missing or null fields -> '').

    Raises:
        ValueError: not a JSON object, a key that is not a non-negative integer, a record that is
            not an object or a field that is not a string (names the file and the item).
    """
    items: dict[int, dict[str, str]] = {}
    for key, rec in _load_json(path).items():
        item = _int_key(path, "item", key)
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: item {key!r}: expected an object, got {type(rec).__name__}")
        fields: dict[str, str] = {}
        for name in ("title", "brand", "categories"):
            value = rec.get(name, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise ValueError(
                    f"{path}: item {key!r}: field {name!r} must be a string, got {type(value).__name__}"
                )
            fields[name] = value
        items[item] = fields
    return items


def read_inter(path: Path, items: dict[int, dict[str, str]], items_path: Path) -> dict[int, list[int]]:
    """Scientific.inter.json as {user index: [item index, ...]} (oldest first), sorted by user.

    Raises:
        ValueError: not a JSON object, a bad user key, an empty or non-list sequence, or an item
            index that is not an integer or is missing from ``items`` (names the file and the user).
    """
    seqs: dict[int, list[int]] = {}
    for key, seq in _load_json(path).items():
        user = _int_key(path, "user", key)
        if not isinstance(seq, list) or not seq:
            raise ValueError(f"{path}: user {key!r}: expected a non-empty list of item indices")
        out: list[int] = []
        for raw in seq:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError(f"{path}: user {key!r}: item index {raw!r} is not an integer")
            try:
                item = int(raw)
            except ValueError:
                raise ValueError(f"{path}: user {key!r}: item index {raw!r} is not an integer") from None
            if item not in items:
                raise ValueError(f"{path}: user {key!r}: item index {raw!r} is missing from {items_path}")
            out.append(item)
        seqs[user] = out
    return dict(sorted(seqs.items()))
