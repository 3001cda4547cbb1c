"""Parse model outputs into advertiser names and interests (design.md "Prompts", "Parsing").

The GRPO/inference format (paper A.3 and A.5) is an ``<answer>`` element with two children,
``<interests>`` and ``<advertiser_names>``, each holding a '|'-separated list, optionally in ``[...]``.
Models get this only approximately right, so :func:`parse_answer` accepts either order of the children,
missing brackets, whitespace and newlines inside, text or a ``<think>`` block around the answer, bare
'&' in names and truncated output, and reports per row whether the answer was well formed ('ok'),
recoverable ('partial') or had no advertiser list at all ('unparseable'). It never raises.

Only the three tags of the format (and ``<think>``) are treated as markup; everything else is escaped
before lxml's recovering parser sees it, so names such as "H&M" or "A<B" survive.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lxml import etree

Status = Literal["ok", "partial", "unparseable"]
TAGS: tuple[str, ...] = ("answer", "interests", "advertiser_names")

# Characters that XML 1.0 cannot hold (lxml refuses them even in recover mode), plus DEL and the C1
# controls (XML allows them, but they are never part of a name and would end up in raw_names).
_XML_INVALID_RE = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# A CDATA section (or an unterminated one at the end of truncated output): its content is text.
_CDATA_RE = re.compile(r"<!\[CDATA\[(.*?)(?:\]\]>|$)", re.DOTALL)
# Output cut inside a tag of the format: '<', '</', '</adverti', '<answer' at the very end.
_PARTIAL_TAG_RE = re.compile(r"/?\s*([A-Za-z_]*)")
_THINK_BLOCK_RE = re.compile(r"<\s*think\s*>.*?<\s*/\s*think\s*>", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE_RE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
# Possessive '\s*+': with plain '\s*' a '<' followed by n spaces backtracks O(n^2) (20k spaces: ~20 s).
_THINK_TAG_RE = re.compile(r"<\s*+/?\s*+think\s*>", re.IGNORECASE)
_TAG_RE = re.compile(r"<\s*+(/?)\s*+(answer|interests|advertiser_names)\s*>", re.IGNORECASE)
_ITEM_SPLIT_RE = re.compile(r"[|\n\r]+")
_NUMBERING_RE = re.compile(r"^\s*(?:\d{1,3}\s*[.):]\s+|[-*•]\s+)")
_QUOTES = "\"'`“”‘’«»"
_PREFIX_RE = re.compile(
    r"^\s*(?:(?:the\s+)?(?:predicted|final|top|recommended)\s+)?"
    r"(?:advertiser(?:\s+name)?s?|answer|prediction)\s*[:=\-]\s*",
    re.IGNORECASE,
)
_MAX_ITEM_CHARS = 200  # longer "names" are cut (a runaway generation without separators)


@dataclass
class ParsedAnswer:
    """What could be read from one model output."""

    advertisers: list[str] = field(default_factory=list)  # de-duplicated (case-insensitive), order kept
    interests: list[str] = field(default_factory=list)  # de-duplicated (case-insensitive), order kept
    status: Status = "unparseable"  # 'ok' well formed | 'partial' recovered | 'unparseable' no list
    n_advertisers_raw: int = 0  # non-empty advertiser items before de-duplication and truncation
    n_duplicates: int = 0  # advertiser items dropped as case-insensitive duplicates
    notes: list[str] = field(default_factory=list)  # what was wrong, for reports
    n_interests_raw: int = 0  # non-empty interest items before de-duplication and truncation
    n_advertisers_unique: int = 0  # advertisers after de-duplication, before the max_advertisers cut


def _split_items(text: str) -> list[str]:
    """Items of a '|'-separated list (newlines also separate), brackets/quotes/numbering removed."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:]
    if text.endswith("]"):
        text = text[:-1]
    items = []
    for raw in _ITEM_SPLIT_RE.split(text):
        item = _NUMBERING_RE.sub("", raw.strip().strip("[]")).strip().strip(_QUOTES).strip()
        item = " ".join(item.split())[:_MAX_ITEM_CHARS]
        if item:
            items.append(item)
    return items


def _dedupe(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.casefold()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _to_xml(text: str) -> str:
    """Escape everything except the format's tags, which are written in canonical form."""
    parts: list[str] = []
    pos = 0
    for m in _TAG_RE.finditer(text):
        parts.append(_escape_text(text[pos : m.start()]))
        parts.append(f"<{m.group(1)}{m.group(2).lower()}>")
        pos = m.end()
    parts.append(_escape_text(text[pos:]))
    return "".join(parts)


def _escape_text(text: str) -> str:
    """Plain text as XML character data: entities decoded once, then '&', '<', '>' escaped."""
    if "&" in text:
        text = _XML_INVALID_RE.sub("", html.unescape(text))
    return html.escape(text, quote=False)


def _select_region(text: str) -> tuple[str, bool]:
    """The text of the answer to parse and whether an ``<answer>`` opening tag was found.

    With several ``<answer>`` elements (e.g. the format echoed before the real one) the last one that
    contains an ``<advertiser_names>`` tag is used.
    """
    tags = [(m.start(), m.end(), m.group(1) == "/", m.group(2).lower()) for m in _TAG_RE.finditer(text)]
    opens = [i for i, t in enumerate(tags) if t[3] == "answer" and not t[2]]
    if not opens:
        return text, False
    chosen = opens[0]
    for k, i in enumerate(opens):
        end = opens[k + 1] if k + 1 < len(opens) else len(tags)
        if any(t[3] == "advertiser_names" and not t[2] for t in tags[i + 1 : end]):
            chosen = i
    start = tags[chosen][0]
    stop = len(text)
    for t in tags[chosen + 1 :]:
        if t[3] == "answer":
            stop = t[1] if t[2] else t[0]
            break
    return text[start:stop], True


def _own_text(element: Any, exclude: str) -> str:
    """Text of ``element`` without the subtree of any ``exclude`` descendant (misnested output)."""
    parts = [element.text or ""]
    for child in element:
        if child.tag != exclude:
            parts.append("".join(child.itertext()))
        parts.append(child.tail or "")
    return "".join(parts)


def _closed(region: str, tag: str) -> bool:
    return re.search(rf"<\s*/\s*{tag}\s*>", region, re.IGNORECASE) is not None


def _drop_think_blocks(text: str) -> str:
    """``text`` without its ``<think>...</think>`` blocks.

    Only the text up to the last ``</think>`` is searched: an unclosed ``<think>`` would make the lazy
    block pattern scan to the end of the text from every opening tag (quadratic on ``<think>`` loops).
    """
    end = max((m.end() for m in _THINK_CLOSE_RE.finditer(text)), default=-1)
    if end < 0:
        return text
    return _THINK_BLOCK_RE.sub(" ", text[:end]) + text[end:]


def _strip_partial_tag(text: str, notes: list[str]) -> str:
    """``text`` without a format tag that the output was cut inside of (it would end the last name)."""
    start = text.rfind("<")
    m = _PARTIAL_TAG_RE.fullmatch(text[start + 1 :].strip()) if start >= 0 else None
    if m and any(tag.startswith(m.group(1).lower()) for tag in (*TAGS, "think")):
        notes.append("output ends inside a tag (truncated output?)")
        return text[:start]
    return text


def _parse(text: str, max_advertisers: int, max_interests: int, allow_bare_list: bool) -> ParsedAnswer:
    out = ParsedAnswer()
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    cleaned = _XML_INVALID_RE.sub("", text)
    if cleaned != text:
        out.notes.append("removed characters not allowed in XML")
    if "<![CDATA[" in cleaned:
        cleaned = _CDATA_RE.sub(lambda m: m.group(1), cleaned)
        out.notes.append("unwrapped CDATA")
    without_think = _strip_partial_tag(_THINK_TAG_RE.sub(" ", _drop_think_blocks(cleaned)), out.notes)
    region, has_answer = _select_region(without_think)

    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(f"<root>{_to_xml(region)}</root>", parser)
    xml_errors = [e.message for e in parser.error_log] if parser.error_log else []

    answer = adv_el = int_el = None
    if root is not None:
        answer = next(root.iter("answer"), None)
        scope = answer if answer is not None else root
        adv_el = next(scope.iter("advertiser_names"), None)
        int_el = next(scope.iter("interests"), None)

    if adv_el is not None:
        advertisers_raw = _split_items(_own_text(adv_el, "interests"))
    elif allow_bare_list and not has_answer and "|" in region and "<" not in region:
        advertisers_raw = _split_items(region)
        out.notes.append("no <advertiser_names> element; read a bare '|'-separated list")
    else:
        advertisers_raw = []
    interests_raw = _split_items(_own_text(int_el, "advertiser_names")) if int_el is not None else []

    unique = _dedupe(advertisers_raw)
    out.n_advertisers_raw = len(advertisers_raw)
    out.n_advertisers_unique = len(unique)
    out.n_duplicates = len(advertisers_raw) - len(unique)
    out.advertisers = unique[:max_advertisers]
    unique_interests = _dedupe(interests_raw)
    out.n_interests_raw = len(interests_raw)
    out.interests = unique_interests[:max_interests]

    if not out.advertisers:
        out.status = "unparseable"
        out.notes.append(
            "empty <advertiser_names>" if adv_el is not None else "no <advertiser_names> list found"
        )
        return out

    well_formed = (
        has_answer
        and answer is not None
        and int_el is not None
        and all(_closed(region, tag) for tag in TAGS)
        and not xml_errors
    )
    out.status = "ok" if well_formed else "partial"
    if not has_answer and adv_el is not None:
        out.notes.append("no <answer> element")
    if int_el is None:
        out.notes.append("no <interests> element")
    for tag in TAGS:
        if f"<{tag}>" in region.lower() and not _closed(region, tag):
            out.notes.append(f"missing </{tag}> (truncated output?)")
    if xml_errors and out.status == "partial":
        out.notes.append(f"xml: {xml_errors[0].strip()}")
    if out.n_duplicates:
        out.notes.append(f"{out.n_duplicates} duplicate advertiser(s)")
    if len(unique) != max_advertisers:
        out.notes.append(f"expected {max_advertisers} advertisers, got {len(unique)}")
    if len(unique_interests) > max_interests:
        out.notes.append(f"expected at most {max_interests} interests, got {len(unique_interests)}")
    return out


def parse_answer(
    text: str, max_advertisers: int = 20, max_interests: int = 5, allow_bare_list: bool = False
) -> ParsedAnswer:
    """Parse a GRPO/inference output (``<answer>`` XML, A.3 or A.5 child order) into a ParsedAnswer.

    'ok': the ``<answer>`` element and both children are present and closed (count mismatches are
    reported in the fields and notes, not the status); 'partial': advertisers were recovered from a
    malformed or truncated answer; 'unparseable': no advertiser could be found. With
    ``allow_bare_list`` a tag-free '|'-separated line (the sft_text_20 format) is read as 'partial'.
    Lists are cut to ``max_advertisers`` / ``max_interests`` after de-duplication. Never raises.
    """
    try:
        return _parse(text, max_advertisers, max_interests, allow_bare_list)
    except Exception as exc:  # never raise on model output
        return ParsedAnswer(status="unparseable", notes=[f"parser error: {type(exc).__name__}: {exc}"])


def parse_list(text: str, max_advertisers: int = 20) -> ParsedAnswer:
    """Parse an sft_text_20 output: '|'-separated names, or the ``<answer>`` XML if the model wrote it."""
    return parse_answer(text, max_advertisers=max_advertisers, allow_bare_list=True)


def parse_single(text: str) -> ParsedAnswer:
    """Parse an SFT single-advertiser output (free text): the first non-empty line, cleaned.

    Strips a ``<think>`` block, quotes, markdown emphasis, list numbering and prefixes such as
    "Advertiser:" or "Answer:". If the model wrote the ``<answer>`` XML instead, its first advertiser
    is used. Never raises.
    """
    try:
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        text = _CDATA_RE.sub(lambda m: m.group(1), _XML_INVALID_RE.sub("", text))
        text = _THINK_TAG_RE.sub(" ", _drop_think_blocks(text))
        if re.search(r"<\s*advertiser_names\s*>", text, re.IGNORECASE):
            parsed = parse_answer(text, max_advertisers=1, max_interests=0)
            parsed.notes.append("single-advertiser output in <answer> format")
            if parsed.status == "ok":
                parsed.status = "partial"
            return parsed
        for line in text.splitlines():
            name = html.unescape(line).replace("**", "").replace("__", "").strip()
            name = _NUMBERING_RE.sub("", name)
            name = _PREFIX_RE.sub("", name)
            name = name.strip().strip(_QUOTES).strip().rstrip(".").strip().strip(_QUOTES).strip()
            name = " ".join(name.split())
            if not name:
                continue
            notes = []
            status: Status = "ok"
            if len(name) > 100:
                status = "partial"
                notes.append("long first line; probably not a bare advertiser name")
                name = name[:_MAX_ITEM_CHARS]
            return ParsedAnswer(
                advertisers=[name], status=status, n_advertisers_raw=1, n_advertisers_unique=1, notes=notes
            )
        return ParsedAnswer(status="unparseable", notes=["empty output"])
    except Exception as exc:  # never raise on model output
        return ParsedAnswer(status="unparseable", notes=[f"parser error: {type(exc).__name__}: {exc}"])


def parse_batch(
    texts: Iterable[str], max_advertisers: int = 20, max_interests: int = 5, single: bool = False
) -> list[ParsedAnswer]:
    """:func:`parse_answer` (or :func:`parse_single` with ``single``) over many outputs."""
    if single:
        return [parse_single(t) for t in texts]
    return [parse_answer(t, max_advertisers, max_interests) for t in texts]


def summarize(parsed: Sequence[ParsedAnswer], expected_advertisers: int = 20) -> dict[str, Any]:
    """Counts per status, mean advertisers/interests and duplicates over parsed outputs."""
    n = len(parsed)
    counts = {"ok": 0, "partial": 0, "unparseable": 0}
    for p in parsed:
        counts[p.status] = counts.get(p.status, 0) + 1
    return {
        "n": n,
        **counts,
        "ok_rate": counts["ok"] / n if n else 0.0,
        "mean_advertisers": sum(len(p.advertisers) for p in parsed) / n if n else 0.0,
        "mean_interests": sum(len(p.interests) for p in parsed) / n if n else 0.0,
        "n_duplicates": sum(p.n_duplicates for p in parsed),
        "rows_with_duplicates": sum(1 for p in parsed if p.n_duplicates),
        "exact_count_rate": (
            sum(1 for p in parsed if p.n_advertisers_unique == expected_advertisers) / n if n else 0.0
        ),
    }
