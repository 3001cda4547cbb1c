"""Rendering prompts from the Appendix A templates of :mod:`llm_predictor.data.templates` (design.md "Prompts").

Every template is split at ``#Input`` into

* a *shared prefix* (role, requirements, preset pool, output format) that depends only on the template
  and the anchor date's preset pool, so it is byte-identical for every user of that date and an
  inference server can cache its KV blocks once, and
* a *user suffix* (active advertisers, profile, behaviour) rendered from one row of the examples table
  (``adprior.contracts``), sanitised and cut to a token budget.

User-supplied text (queries, URLs, titles, brand and category names) is data, never instructions:
:func:`sanitize_text` removes markup, control characters and the template's delimiter characters and
quotes instruction-like phrases, so no field value can add a header, an XML tag or a bracket to the
prompt.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from llm_predictor.data.sanitize import SID_FIELDS, as_list, clean_list, is_missing, sanitize_text
from llm_predictor.data.templates import (
    INPUT_HEADER,
    LIST_PLACEHOLDERS,
    LIST_SEP,
    NAME_SEP,
    NO_ACTIVE_ADVERTISERS,
    PROFILE_PLACEHOLDERS,
    TEMPLATES,
    UNKNOWN,
    wrap_as_answer,
)

# --------------------------------------------------------------------------------------------------
# Budget
# --------------------------------------------------------------------------------------------------


# Token budget of each user's part of the prompt ("#Input" to the end), the one default of every stage
# that renders prompts (train, infer, nightly, eval, compile's length stats): a model sees at serving the
# prompt lengths it was trained on.
DEFAULT_USER_TOKENS = 400


@dataclass
class PromptBudget:
    """Limits for the per-user suffix of a prompt."""

    max_user_tokens: int = DEFAULT_USER_TOKENS  # token budget of the per-user suffix ("#Input" to the end)
    max_item_chars: int = 120  # longest single item after sanitising (cut on a word boundary + "…")
    max_active_advertisers: int = 30  # newest active advertisers kept before the token budget
    max_attributed_conversions: int = 20  # newest attributed conversions kept
    max_matched_conversions: int = 20  # newest matched conversions kept
    max_onsite_searches: int = 20  # newest on-site search queries kept
    max_offsite_searches: int = 20  # newest off-site search queries kept
    max_offsite_urls: int = 15  # newest off-site URLs kept
    max_top_categories: int = 10  # top categories kept
    max_top_brands: int = 10  # top brands kept
    max_sid_sequences: int = 20  # newest semantic-ID sequences kept (SID templates only)
    count_tokens: Callable[[str], int] | None = None  # tokenizer length; None -> ceil(len(text) / 4)

    def max_items(self, field: str) -> int:
        """Per-field item cap (before the token budget) of an examples-table list column."""
        return int(getattr(self, f"max_{field}"))

    def tokens(self, text: str) -> int:
        """Token count of ``text`` with the configured counter (or the character estimate)."""
        if self.count_tokens is None:
            return math.ceil(len(text) / 4)
        return int(self.count_tokens(text))


def hf_token_counter(tokenizer: Any) -> Callable[[str], int]:
    """A token counter for :class:`PromptBudget` from a Hugging Face tokenizer."""
    return lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------------
# Sanitising
# --------------------------------------------------------------------------------------------------


def _template_text(template: str) -> str:
    """Template text from a name in :data:`TEMPLATES` (or a raw template containing ``#Input``)."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if f"\n{INPUT_HEADER}\n" in template:
        return template
    raise KeyError(f"unknown prompt template {template!r}; known: {sorted(TEMPLATES)}")


@lru_cache(maxsize=64)
def _split_template(text: str) -> tuple[str, str, tuple[str, ...]]:
    """(prefix template, suffix template, list fields of the suffix in order)."""
    idx = text.index(f"\n{INPUT_HEADER}\n") + 1
    prefix, suffix = text[:idx], text[idx:]
    names = [name for _, name, _, _ in string.Formatter().parse(suffix) if name]
    unknown = [n for n in names if n not in LIST_PLACEHOLDERS and n not in PROFILE_PLACEHOLDERS]
    if unknown:
        raise KeyError(f"template has unknown per-user placeholders: {unknown}")
    fields = tuple(LIST_PLACEHOLDERS[n] for n in names if n in LIST_PLACEHOLDERS)
    return prefix, suffix, fields


@lru_cache(maxsize=256)
def _shared_prefix_cached(text: str, pool: tuple[str, ...], max_item_chars: int) -> str:
    prefix, _, _ = _split_template(text)
    clean = clean_list(pool, len(pool), max_item_chars).items
    return prefix.replace("{preset_advertiser_pool}", NAME_SEP.join(clean))


def shared_prefix(template: str, preset_pool: Sequence[str], max_item_chars: int = 120) -> str:
    """The part of the prompt shared by all users of a date: everything before ``#Input``.

    Depends only on the template and the preset pool, so it is byte-identical across users; it ends
    with the blank line right before ``#Input``.
    """
    return _shared_prefix_cached(_template_text(template), tuple(str(p) for p in preset_pool), max_item_chars)


def _profile_value(value: object, max_chars: int) -> str:
    if is_missing(value):
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return sanitize_text(value, max_chars) or UNKNOWN


def _render_suffix(suffix_template: str, lists: Mapping[str, list[str]], profile: Mapping[str, str]) -> str:
    values: dict[str, str] = dict(profile)
    for placeholder, field in LIST_PLACEHOLDERS.items():
        items = lists.get(field, [])
        if field == "active_advertisers":
            values[placeholder] = NAME_SEP.join(items) if items else NO_ACTIVE_ADVERTISERS
        else:
            values[placeholder] = LIST_SEP.join(items)
    return suffix_template.format_map(values)


def _removal_order(lists: Mapping[str, list[str]], fields: Sequence[str]) -> list[str]:
    """Fields to drop the last (oldest) item from, one item per step, longest list first.

    "Longest" is the item count; ties go to the list with more characters, then to the later field
    of the template (so the active advertisers, the strongest feature, are cut last).
    """
    counts = {f: len(lists[f]) for f in fields}
    chars = {f: [0] for f in fields}
    for f in fields:
        for item in lists[f]:
            chars[f].append(chars[f][-1] + len(item) + len(LIST_SEP))
    rank = {f: i for i, f in enumerate(fields)}
    order: list[str] = []
    for _ in range(sum(counts.values())):
        f = max(fields, key=lambda g: (counts[g], chars[g][counts[g]], rank[g]))
        order.append(f)
        counts[f] -= 1
    return order


def _user_suffix_with_stats(
    template: str, example: Mapping[str, Any], budget: PromptBudget | None
) -> tuple[str, dict[str, Any]]:
    budget = budget or PromptBudget()
    _, suffix_template, fields = _split_template(_template_text(template))
    cleaned = {
        f: clean_list(as_list(example.get(f)), budget.max_items(f), budget.max_item_chars, f in SID_FIELDS)
        for f in fields
    }
    lists = {f: c.items for f, c in cleaned.items()}
    profile = {
        placeholder: _profile_value(example.get(col), budget.max_item_chars)
        for placeholder, col in PROFILE_PLACEHOLDERS.items()
    }

    def render(n_removed: int) -> str:
        counts = {f: len(lists[f]) for f in fields}
        for f in order[:n_removed]:
            counts[f] -= 1
        return _render_suffix(suffix_template, {f: lists[f][: counts[f]] for f in fields}, profile)

    def fits(n_removed: int) -> bool:
        return budget.tokens(render(n_removed)) <= budget.max_user_tokens

    order: list[str] = []
    n_removed = 0
    if not fits(0):
        order = _removal_order(lists, fields)
        # Smallest number of round-robin removals that fits: O(log n) tokenizer calls.
        lo, hi = 1, len(order)
        if not fits(hi):
            lo = hi
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(mid):
                hi = mid
            else:
                lo = mid + 1
        n_removed = lo
    suffix = render(n_removed)
    n_tokens = budget.tokens(suffix)
    dropped_budget = {f: 0 for f in fields}
    for f in order[:n_removed]:
        dropped_budget[f] += 1
    kept = {f: len(lists[f]) - dropped_budget[f] for f in fields}
    stats: dict[str, Any] = {
        "kept": kept,
        "dropped_budget": dropped_budget,
        "dropped_cap": {f: cleaned[f].dropped_cap for f in fields},
        "dropped_sanitize": {f: cleaned[f].dropped_sanitize for f in fields},
        "dropped": {
            f: dropped_budget[f] + cleaned[f].dropped_cap + cleaned[f].dropped_sanitize for f in fields
        },
        "n_quoted": sum(c.n_quoted for c in cleaned.values()),
        "suffix_tokens": n_tokens,
        "max_user_tokens": budget.max_user_tokens,
        "fits": n_tokens <= budget.max_user_tokens,
    }
    return suffix, stats


def user_suffix(template: str, example: Mapping[str, Any], budget: PromptBudget | None = None) -> str:
    """The per-user part of the prompt, from ``#Input`` to the end, cut to ``budget.max_user_tokens``.

    ``example`` is one row of the examples table as a mapping; missing keys render as empty lists or
    "unknown". Over budget, items are dropped from the end (oldest) of the longest lists first,
    round-robin; field headers are never dropped.
    """
    return _user_suffix_with_stats(template, example, budget)[0]


def allowed_names(
    example: Mapping[str, Any], preset_pool: Sequence[str], budget: PromptBudget | None = None
) -> list[str]:
    """The row's name pool for constrained decoding: its active advertisers, its top brands (a brand is an
    advertiser's name in both datasets: ``world`` and amazon-scientific's brand = advertiser), then the preset
    pool, each as the prompt shows it (sanitised, cut to ``budget.max_item_chars``), de-duplicated in order.
    A brand that is no advertiser is dropped by the resolver like any unknown name."""
    budget = budget or PromptBudget()
    names = [
        sanitize_text(n, budget.max_item_chars)
        for n in [
            *as_list(example.get("active_advertisers")),
            *as_list(example.get("top_brands")),
            *preset_pool,
        ]
    ]
    return list(dict.fromkeys(n for n in names if n))


def build_prompt_with_stats(
    template: str, example: Mapping[str, Any], preset_pool: Sequence[str], budget: PromptBudget | None = None
) -> tuple[str, dict[str, Any]]:
    """:func:`build_prompt` plus per-field kept/dropped item counts and the suffix token count."""
    budget = budget or PromptBudget()
    suffix, stats = _user_suffix_with_stats(template, example, budget)
    return shared_prefix(template, preset_pool, budget.max_item_chars) + suffix, stats


def build_prompt(
    template: str, example: Mapping[str, Any], preset_pool: Sequence[str], budget: PromptBudget | None = None
) -> str:
    """The full prompt: :func:`shared_prefix` + :func:`user_suffix`."""
    return build_prompt_with_stats(template, example, preset_pool, budget)[0]


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """The prompt as a single user message (the model's tokenizer applies its chat template later)."""
    return [{"role": "user", "content": prompt}]


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------


def _clean_names(names: Iterable[Any], max_chars: int = 120) -> list[str]:
    return clean_list(list(names), 1 << 30, max_chars).items


def sft_completion(advertiser_name: str | Sequence[str]) -> str:
    """SFT target: the advertiser name (sanitised like the pool); a sequence is joined by '|' (sft_text_20)."""
    if isinstance(advertiser_name, str):
        return sanitize_text(advertiser_name)
    return "|".join(_clean_names(advertiser_name))


def grpo_completion(advertiser_names: Sequence[str], interests: Sequence[str]) -> str:
    """GRPO/inference target in the output format of A.3, both lists in brackets (items sanitised)."""
    return wrap_as_answer(_clean_names(advertiser_names), _clean_names(interests))
