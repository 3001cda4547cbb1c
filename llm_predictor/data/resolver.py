"""Resolve predicted advertiser names to advertiser IDs (design.md "Prompts": resolution).

A predicted name is looked up, in order, as

1. ``exact``: its normalised form (NFKC, casefold, HTML entities unescaped, accents removed, '&' ->
   'and', apostrophes dropped, punctuation and spacing ignored, leading "the" and trailing corporate
   suffixes such as inc/co/llc/ltd/corp/company dropped) equals an advertiser's normalised name;
2. ``alias``: it equals a normalised alias;
3. ``domain``: it is (or contains) a domain of an advertiser, with or without ``www.``/scheme/path,
   or its normalised form equals a domain without its top-level domain ("sephora" for sephora.com);
4. ``fuzzy``: rapidfuzz ``process.extractOne`` over the normalised names and aliases reaches
   ``score_cutoff`` (names shorter than ``fuzzy_min_len`` are never fuzzy-matched).

Names that resolve to nothing are hallucinations and are counted. A key shared by several advertisers
resolves to the active one, then the lowest id. Resolutions are cached: the same few thousand names
repeat across millions of users.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from rapidfuzz import fuzz, process

Method = Literal["exact", "alias", "domain", "fuzzy", "unresolved"]
RESOLVED_METHODS: tuple[str, ...] = ("exact", "alias", "domain", "fuzzy")

CORPORATE_SUFFIXES: frozenset[str] = frozenset(
    {
        "inc",
        "incorporated",
        "co",
        "llc",
        "ltd",
        "limited",
        "corp",
        "corporation",
        "company",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "lp",
        "llp",
    }
)
_APOSTROPHES_RE = re.compile(r"['’‘`´]")
# Separators: anything but letters and digits of any script ("[^0-9a-z]" made every non-Latin name,
# e.g. "無印良品" or "Магнит", normalise to "" so that it could never be resolved, not even exactly).
_NON_ALNUM_RE = re.compile(r"[\W_]+")
_DOMAIN_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\d?\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?:[:/?#].*)?$")
# Second-level labels that belong to a country TLD ("co.uk", "com.au").
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "ac", "edu"})


@dataclass
class ResolverConfig:
    """How predicted names are matched to advertisers."""

    score_cutoff: float = 90.0  # minimum rapidfuzz score (0-100) for a fuzzy match
    scorer: str = "ratio"  # rapidfuzz.fuzz scorer: 'ratio' | 'token_sort_ratio' | 'WRatio' | ...
    fuzzy_min_len: int = 4  # normalised names shorter than this are never fuzzy-matched
    use_fuzzy: bool = True  # False: exact/alias/domain only
    active_only: bool = False  # True: inactive advertisers are not resolvable at all
    cache_size: int = 1_000_000  # resolutions kept in the LRU cache
    top_unresolved: int = 20  # most frequent unresolved names listed in reports


@dataclass(frozen=True)
class Resolution:
    """How one predicted name was resolved."""

    name: str  # the predicted name as given
    advertiser_id: int | None  # None when unresolved
    method: Method  # 'exact' | 'alias' | 'domain' | 'fuzzy' | 'unresolved'
    score: float  # 100 for exact/alias/domain, the rapidfuzz score for fuzzy, 0 when unresolved
    ambiguous: bool = False  # the matched key belonged to several advertisers (rule: active, lowest id)


def normalize_name(name: object) -> str:
    """Canonical key of an advertiser name: lowercase letters and digits only, no corporate suffix."""
    if name is None:
        return ""
    text = unicodedata.normalize("NFKC", html.unescape(str(name))).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = text.replace("&", " and ").replace("+", " and ")
    text = _APOSTROPHES_RE.sub("", text)
    tokens = [t for t in _NON_ALNUM_RE.split(text) if t]
    if len(tokens) > 1 and tokens[0] == "the":
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in CORPORATE_SUFFIXES:
        tokens = tokens[:-1]
        if len(tokens) > 1 and tokens[-1] == "and":  # "Smith & Co" -> "smith"
            tokens = tokens[:-1]
    return "".join(tokens)


def domain_host(text: object) -> str:
    """Host of a domain or URL without scheme, ``www.``, port or path ("" if it is not one)."""
    if text is None:
        return ""
    s = unicodedata.normalize("NFKC", str(text)).strip().casefold()
    if not s or " " in s:
        return ""
    m = _DOMAIN_RE.match(s)
    return m.group(1).strip(".") if m else ""


def domain_stem(host: str) -> str:
    """The registrable label of a host, normalised: "shop.sephora.co.uk" -> "sephora"."""
    labels = [label for label in host.split(".") if label]
    if len(labels) < 2:
        return normalize_name(host)
    labels = labels[:-1]  # top-level domain
    if len(labels) >= 2 and labels[-1] in _SECOND_LEVEL:
        labels = labels[:-1]
    return normalize_name(labels[-1])


def _column(table: Any, name: str, n: int, default: Any) -> list[Any]:
    """A column as a Python list from a pyarrow Table or pandas DataFrame (default if absent)."""
    names = list(table.column_names) if hasattr(table, "column_names") else list(table.columns)
    if name not in names:
        return [default] * n
    if hasattr(table, "column_names"):
        return table.column(name).to_pylist()
    return table[name].tolist()


class AdvertiserResolver:
    """Maps predicted advertiser names to advertiser IDs (exact, alias, domain, fuzzy)."""

    def __init__(
        self,
        advertiser_ids: Sequence[int],
        names: Sequence[str | None],
        aliases: Sequence[Iterable[str] | None] | None = None,
        domains: Sequence[str | None] | None = None,
        is_active: Sequence[bool | None] | None = None,
        config: ResolverConfig | None = None,
    ) -> None:
        self.config = config or ResolverConfig()
        n = len(advertiser_ids)
        aliases = aliases if aliases is not None else [None] * n
        domains = domains if domains is not None else [None] * n
        is_active = is_active if is_active is not None else [True] * n
        self.names: dict[int, str] = {}
        self.active: dict[int, bool] = {}
        name_keys: dict[str, set[int]] = {}
        alias_keys: dict[str, set[int]] = {}
        host_keys: dict[str, set[int]] = {}
        stem_keys: dict[str, set[int]] = {}
        for i in range(n):
            try:
                aid = int(advertiser_ids[i])
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"advertisers row {i}: advertiser_id must be an integer, got {advertiser_ids[i]!r}"
                ) from exc
            active = bool(is_active[i]) if is_active[i] is not None else False
            if self.config.active_only and not active:
                continue
            self.names[aid] = "" if names[i] is None else str(names[i])
            self.active[aid] = active
            key = normalize_name(names[i])
            if key:
                name_keys.setdefault(key, set()).add(aid)
            for alias in aliases[i] if aliases[i] is not None else ():
                akey = normalize_name(alias)
                if akey:
                    alias_keys.setdefault(akey, set()).add(aid)
            host = domain_host(domains[i])
            if host:
                host_keys.setdefault(host, set()).add(aid)
                stem = domain_stem(host)
                if stem:
                    stem_keys.setdefault(stem, set()).add(aid)
        self.n_ambiguous_keys = 0  # keys (of any kind) shared by several advertisers
        self._name_index = self._pick(name_keys)
        self._alias_index = self._pick(alias_keys)
        self._host_index = self._pick(host_keys)
        self._stem_index = self._pick(stem_keys)
        # Fuzzy choices: every name and alias key (a name key wins over an alias key).
        self._fuzzy_index: dict[str, tuple[int, bool]] = {**self._alias_index, **self._name_index}
        self._fuzzy_keys: list[str] = list(self._fuzzy_index)
        self._scorer = getattr(fuzz, self.config.scorer)
        self._cached = lru_cache(maxsize=self.config.cache_size)(self._resolve_uncached)

    # ---------------------------------------------------------------------------------------------
    @classmethod
    def from_table(cls, table: Any, config: ResolverConfig | None = None) -> AdvertiserResolver:
        """Build from the advertisers table (pyarrow Table or pandas DataFrame).

        Columns: advertiser_id, name (required); aliases, domain, is_active (optional; brand_group and
        category are not used for resolution).
        """
        n = table.num_rows if hasattr(table, "num_rows") else len(table)
        columns = list(table.column_names) if hasattr(table, "column_names") else list(table.columns)
        missing = [c for c in ("advertiser_id", "name") if c not in columns]
        if missing:
            raise ValueError(f"advertisers table lacks required column(s) {missing}; has {columns}")
        return cls(
            advertiser_ids=_column(table, "advertiser_id", n, None),
            names=_column(table, "name", n, None),
            aliases=[_as_aliases(a) for a in _column(table, "aliases", n, None)],
            domains=_column(table, "domain", n, None),
            is_active=_column(table, "is_active", n, True),
            config=config,
        )

    def _pick(self, index: Mapping[str, set[int]]) -> dict[str, tuple[int, bool]]:
        """One advertiser per key: active first, then the lowest id; (id, ambiguous)."""
        out: dict[str, tuple[int, bool]] = {}
        for key, ids in index.items():
            best = min(ids, key=lambda a: (not self.active.get(a, False), a))
            ambiguous = len(ids) > 1
            self.n_ambiguous_keys += ambiguous
            out[key] = (best, ambiguous)
        return out

    # ---------------------------------------------------------------------------------------------
    def _resolve_uncached(self, name: str) -> Resolution:
        key = normalize_name(name)
        if key in self._name_index:
            aid, amb = self._name_index[key]
            return Resolution(name, aid, "exact", 100.0, amb)
        if key in self._alias_index:
            aid, amb = self._alias_index[key]
            return Resolution(name, aid, "alias", 100.0, amb)
        host = domain_host(name)
        if host:
            for candidate in (host, host.split(".", 1)[1] if host.count(".") > 1 else ""):
                if candidate in self._host_index:
                    aid, amb = self._host_index[candidate]
                    return Resolution(name, aid, "domain", 100.0, amb)
            stem = domain_stem(host)
            for index in (self._name_index, self._alias_index):
                if stem in index:  # "sephora.com" predicted for the advertiser "Sephora"
                    aid, amb = index[stem]
                    return Resolution(name, aid, "domain", 100.0, amb)
        if key and key in self._stem_index:
            aid, amb = self._stem_index[key]
            return Resolution(name, aid, "domain", 100.0, amb)
        if self.config.use_fuzzy and len(key) >= self.config.fuzzy_min_len and self._fuzzy_keys:
            match = process.extractOne(
                key, self._fuzzy_keys, scorer=self._scorer, score_cutoff=self.config.score_cutoff
            )
            if match is not None:
                aid, amb = self._fuzzy_index[match[0]]
                return Resolution(name, aid, "fuzzy", float(match[1]), amb)
        return Resolution(name, None, "unresolved", 0.0)

    def resolve(self, name: str) -> Resolution:
        """Resolve one predicted name (cached)."""
        return self._cached("" if name is None else str(name))

    def resolve_list(self, names: Iterable[str]) -> tuple[list[int], list[Resolution]]:
        """IDs of one prediction list, de-duplicated in order, and the resolution of every name."""
        resolutions = [self.resolve(n) for n in names]
        ids: list[int] = []
        seen: set[int] = set()
        for r in resolutions:
            if r.advertiser_id is not None and r.advertiser_id not in seen:
                seen.add(r.advertiser_id)
                ids.append(r.advertiser_id)
        return ids, resolutions

    def resolve_batch(self, name_lists: Iterable[Iterable[str]]) -> tuple[list[list[int]], dict[str, Any]]:
        """Resolve many prediction lists; the report counts methods and hallucinations (unresolved)."""
        all_ids: list[list[int]] = []
        by_method: Counter[str] = Counter()
        unresolved: Counter[str] = Counter()
        n_names = n_ambiguous = n_duplicate_ids = 0
        for names in name_lists:
            ids, resolutions = self.resolve_list(names)
            all_ids.append(ids)
            n_names += len(resolutions)
            n_duplicate_ids += sum(r.advertiser_id is not None for r in resolutions) - len(ids)
            for r in resolutions:
                by_method[r.method] += 1
                n_ambiguous += r.ambiguous
                if r.advertiser_id is None:
                    unresolved[r.name] += 1
        n_unresolved = by_method["unresolved"]
        report: dict[str, Any] = {
            "n_rows": len(all_ids),
            "n_names": n_names,
            "n_resolved": n_names - n_unresolved,
            "n_resolved_by_method": {m: by_method[m] for m in RESOLVED_METHODS},
            "n_unresolved": n_unresolved,
            "hallucination_rate": n_unresolved / n_names if n_names else 0.0,
            "n_ambiguous": n_ambiguous,
            "n_duplicate_ids": n_duplicate_ids,
            "top_unresolved": unresolved.most_common(self.config.top_unresolved),
        }
        return all_ids, report

    def name_of(self, advertiser_id: int) -> str | None:
        """The advertiser's name as in the table (None for an unknown id)."""
        return self.names.get(advertiser_id)

    def cache_info(self) -> Any:
        """The LRU cache statistics of :meth:`resolve`."""
        return self._cached.cache_info()


def _as_aliases(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return [str(v) for v in value if v is not None]
    except TypeError:
        return []
