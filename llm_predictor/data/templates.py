"""The prompt texts of paper Appendix A and the answer format they ask for (design.md "Prompts").

The four templates of the paper (A.1 ``sft_text``, A.2 ``sft_sid``, A.3 ``grpo_text``, the inference
template, A.4 ``grpo_sid``) render the paper's texts verbatim, with its line wrapping. A.1 and A.3 are
written out, ending in the ``#Input`` section they share (:data:`USER_INPUT`); A.2 and A.4 are A.1 and A.3
plus their SID lines, and two more variants are derived, all by exact, checked replacements. Each
template has a ``#Input`` header: what comes before it is shared by every user of a date, what follows
holds the per-user placeholders listed here. Rendering (sanitising, the token budget, the shared prefix
and the user suffix) is :mod:`llm_predictor.data.prompts`.
"""

from __future__ import annotations

from collections.abc import Sequence

# The #Input section that ends A.1 and A.3 (A.2 and A.4 add the SID line): the per-user part of a prompt.
USER_INPUT = """#Input
- Active Advertisers with Past Conversions:
{active_advertisers_with_past_conversions}
- Profile:
Gender: {gender}, Age: {age}, User Type: {userstate}
- Behavior:
Attributed Conversions [{attributed_conversions}]
Matched Conversions [{matched_conversions}]
Onsite Searches [{onsite_searches}]
Offsite Searches [{offsite_searches}]
Offsite URLs [{offsite_urls}]
Top Categories [{top_categories}]
Top Brands [{top_brands}]"""

# A.1. The paper's listing is split in two code blocks after "##Mandatory Requirements" (a page break);
# the text is joined here without the blank line, exactly as in the otherwise identical A.2.
SFT_TEXT = (
    """#Role
You are an ad-matching assistant for a commerce/discovery platform.
Your task is to predict 1 advertiser most likely to convert
and identify user interests based on their profile and
behavior.

##Mandatory Requirements
**Advertiser Mining Requirements**
1) Predict 1 advertiser likely to convert using user behavior and
profile. Relate to user interests but don't limit to them.
2) Select exactly 1 advertiser from either the Active Advertisers
with Past Conversions or the Preset Advertiser List.
3) Ensure diverse interests; cover dominant ones; avoid duplicates
within brand groups.
4) Examine URLs for advertiser and item information.
5) Prioritize the most recent data when evaluating signals (weight
recency strongly and de-emphasize stale activity).

**Quantity Requirements**
- Provide 1 advertiser.

#Preset Pool
- Preset Advertiser List: {preset_advertiser_pool}

"""
    + USER_INPUT
)

# A.3 (the inference template)
GRPO_TEXT = (
    """#Role
You are an ad-matching assistant for a commerce/discovery platform.
Your task is to predict top advertisers most likely to
convert and identify user interests based on their profile
and behavior.

#Mandatory Requirements
**Advertiser Mining Requirements**
1) Predict advertisers likely to convert using user behavior and
profile. Relate to user interests but don't limit to them.
2) Select up to 4 advertisers from the Active Advertisers with
Past Conversions; choose others from the Preset Advertiser
List.
3) Ensure diverse interests; cover dominant ones; avoid duplicates
within brand groups.
4) Examine URLs for advertiser and item information.

**Interest Mining Requirements**
1) Group behaviors into user interests; evaluate by recency,
frequency, and diversity (R/F/D).
2) Prioritize consistent multi-session patterns; reduce emphasis
on short-term spikes.
3) Create a ranked list of user interests from all behavioral
signals.
4) Use URLs to find top interests, removing noise from top
categories.

**Quantity Requirements**
- Provide up to 5 unique user interests and exactly 20 advertisers.

#Preset Pool
- Preset Advertiser List: {preset_advertiser_pool}

#Output Format
- Return ONLY the following XML.

<answer>
<interests>
[interest 1|interest 2|interest 3|interest 4|interest 5]
</interests>
<advertiser_names>
Advertiser 1|Advertiser 2|Advertiser 3|Advertiser 4|Advertiser 5|
Advertiser 6|Advertiser 7|Advertiser 8|Advertiser 9|
Advertiser 10|Advertiser 11|Advertiser 12|Advertiser 13|
Advertiser 14|Advertiser 15|Advertiser 16|Advertiser 17|
Advertiser 18|Advertiser 19|Advertiser 20
</advertiser_names>
</answer>

"""
    + USER_INPUT
)


def _replace_once(text: str, old: str, new: str) -> str:
    """Replace exactly one occurrence of ``old`` (fails loudly if the paper text drifts)."""
    if text.count(old) != 1:
        raise ValueError(f"template fragment not found exactly once: {old!r}")
    return text.replace(old, new)


def _derive(text: str, replacements: Sequence[tuple[str, str]]) -> str:
    for old, new in replacements:
        text = _replace_once(text, old, new)
    return text


def _after(anchor: str, line: str) -> tuple[str, str]:
    """The replacement that adds ``line`` on a new line after ``anchor``."""
    return anchor, f"{anchor}\n{line}"


# The SID lines of A.2 and A.4.
_SID_PRIMARY = "Use the most recent Semantic ID (SID) sequences as the primary\nintent signal."
_SID_INPUT = "SID Sequences [{sid_sequences}]"

# A.2: A.1 with SID requirement 6) and the SID input line.
SFT_SID = _derive(
    SFT_TEXT,
    [
        _after("recency strongly and de-emphasize stale activity).", f"6) {_SID_PRIMARY}"),
        _after("Top Brands [{top_brands}]", _SID_INPUT),
    ],
)

# A.4: A.3 with SID advertiser requirement 5), SID interest requirement 5) and the SID input line.
GRPO_SID = _derive(
    GRPO_TEXT,
    [
        _after(
            "4) Examine URLs for advertiser and item information.",
            "5) Consider the most recent Semantic ID (SID) sequences as a high-\n"
            "priority signal when selecting advertisers.",
        ),
        _after("removing noise from top\ncategories.", f"5) {_SID_PRIMARY}"),
        _after("Top Brands [{top_brands}]", _SID_INPUT),
    ],
)

# A.1 asking for 20 advertisers, with an explicit output line (before #Input, so it stays shared).
SFT_TEXT_20 = _derive(
    SFT_TEXT,
    [
        (
            "Your task is to predict 1 advertiser most likely to convert",
            "Your task is to predict 20 advertisers most likely to convert",
        ),
        (
            "1) Predict 1 advertiser likely to convert using user behavior and",
            "1) Predict 20 advertisers likely to convert using user behavior and",
        ),
        (
            "2) Select exactly 1 advertiser from either the Active Advertisers",
            "2) Select exactly 20 advertisers from either the Active Advertisers",
        ),
        ("- Provide 1 advertiser.", "- Provide 20 advertisers."),
        (
            "\n#Input\n",
            "\n#Output Format\n"
            "- Return ONLY the 20 advertiser names on one line, separated by '|'.\n"
            "\n#Input\n",
        ),
    ],
)

# A.3 asking the model to reason inside <think>...</think> before the <answer> (zero-shot reasoning row).
GRPO_TEXT_REASONING = _derive(
    GRPO_TEXT,
    [
        (
            "- Return ONLY the following XML.",
            "- First think step by step inside <think>...</think>, then return ONLY the following XML.",
        )
    ],
)

TEMPLATES: dict[str, str] = {
    "sft_text": SFT_TEXT,
    "sft_sid": SFT_SID,
    "grpo_text": GRPO_TEXT,
    "grpo_sid": GRPO_SID,
    "sft_text_20": SFT_TEXT_20,
    "grpo_text_reasoning": GRPO_TEXT_REASONING,
}
INFERENCE_TEMPLATE = "grpo_text"  # design.md: inference uses the GRPO format

INPUT_HEADER = "#Input"
# Template placeholder -> examples-table column (adprior.contracts).
LIST_PLACEHOLDERS: dict[str, str] = {
    "active_advertisers_with_past_conversions": "active_advertisers",
    "attributed_conversions": "attributed_conversions",
    "matched_conversions": "matched_conversions",
    "onsite_searches": "onsite_searches",
    "offsite_searches": "offsite_searches",
    "offsite_urls": "offsite_urls",
    "top_categories": "top_categories",
    "top_brands": "top_brands",
    "sid_sequences": "sid_sequences",
}
PROFILE_PLACEHOLDERS: dict[str, str] = {"gender": "gender", "age": "age", "userstate": "user_state"}
UNKNOWN = "unknown"
NO_ACTIVE_ADVERTISERS = "None"
LIST_SEP = " | "  # behaviour lists, inside the paper's brackets
NAME_SEP = ", "  # active advertisers and preset pool


# The inference answer of A.3 around its two '|'-lists; llm_predictor.infer.grammar builds its grammar from these.
ANSWER_HEAD = "<answer>\n<interests>\n["
ANSWER_MID = "]\n</interests>\n<advertiser_names>\n["
ANSWER_TAIL = "]\n</advertiser_names>\n</answer>"


def wrap_as_answer(names: Sequence[str], interests: Sequence[str] = ()) -> str:
    """The inference answer (paper A.3) around given lists, as written (no cleaning)."""
    return ANSWER_HEAD + "|".join(interests) + ANSWER_MID + "|".join(names) + ANSWER_TAIL
