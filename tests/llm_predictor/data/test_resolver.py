"""Unit tests of llm_predictor.data.resolver: normalisation, aliases, domains, fuzzy matching, hallucinations."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from llm_predictor.data.resolver import AdvertiserResolver, ResolverConfig, domain_host, normalize_name

ADVERTISERS = pa.table(
    {
        "advertiser_id": pa.array([1, 2, 3, 4, 5, 6, 7, 8], pa.int64()),
        "name": [
            "Sephora",
            "H&M",
            "Johnson & Johnson",
            "The Gap Inc.",
            "Acme",
            "ACME Corp",
            "Zenith",
            "Zenith",
        ],
        "aliases": [["Sephora USA"], ["Hennes & Mauritz"], ["J&J"], ["Gap"], [], None, [], []],
        "domain": ["www.sephora.com", "hm.com", "jnj.com", "gap.com", None, None, "zenith.com", None],
        "brand_group": ["lvmh", "hm", "jnj", "gap", "acme", "acme", "z", "z"],
        "category": ["beauty", "apparel", "health", "apparel", "tools", "tools", "tv", "tv"],
        "is_active": [True, True, True, True, False, True, True, True],
    }
)


@pytest.fixture(scope="module")
def resolver() -> AdvertiserResolver:
    return AdvertiserResolver.from_table(ADVERTISERS)


def test_normalize_name() -> None:
    assert normalize_name("Johnson & Johnson") == normalize_name("johnson and johnson") == "johnsonandjohnson"
    assert normalize_name("H&amp;M") == normalize_name("H & M") == normalize_name("h and m") == "handm"
    assert normalize_name("The Gap, Inc.") == "gap"
    assert normalize_name("Acme Corp.") == normalize_name("ACME Company") == "acme"
    assert normalize_name("Macy's") == "macys"
    assert normalize_name("Nestlé") == "nestle"
    assert normalize_name("Ｓｅｐｈｏｒａ") == "sephora"
    assert normalize_name("The Company") == "company"  # never normalised to nothing
    assert normalize_name(None) == ""


def test_domain_host() -> None:
    assert domain_host("https://www.Sephora.com/shop?x=1") == "sephora.com"
    assert domain_host("sephora.com") == "sephora.com"
    assert domain_host("Dr. Martens") == ""
    assert domain_host("Sephora") == ""


def test_exact(resolver: AdvertiserResolver) -> None:
    r = resolver.resolve("sephora")
    assert (r.advertiser_id, r.method, r.score) == (1, "exact", 100.0)
    assert resolver.resolve("The Gap").advertiser_id == 4
    assert resolver.resolve("  SEPHORA  ").method == "exact"


def test_ampersand_vs_and(resolver: AdvertiserResolver) -> None:
    assert resolver.resolve("Johnson and Johnson").advertiser_id == 3
    assert resolver.resolve("Johnson &amp; Johnson").advertiser_id == 3
    assert resolver.resolve("H and M").advertiser_id == 2
    assert resolver.resolve("H & M").method == "exact"


def test_alias(resolver: AdvertiserResolver) -> None:
    r = resolver.resolve("Hennes and Mauritz")
    assert (r.advertiser_id, r.method) == (2, "alias")
    assert resolver.resolve("J&J").method == "alias"
    assert resolver.resolve("sephora usa").advertiser_id == 1


def test_domain(resolver: AdvertiserResolver) -> None:
    for name in ("www.sephora.com", "sephora.com", "https://sephora.com/us/en", "shop.sephora.com"):
        r = resolver.resolve(name)
        assert (r.advertiser_id, r.method) == (1, "domain"), name
    r = resolver.resolve("jnj")  # domain without www./.com
    assert (r.advertiser_id, r.method) == (3, "domain")
    assert resolver.resolve("hm.com").advertiser_id == 2


def test_fuzzy_typo(resolver: AdvertiserResolver) -> None:
    r = resolver.resolve("Sephorra")
    assert (r.advertiser_id, r.method) == (1, "fuzzy")
    assert 90 <= r.score < 100
    assert resolver.resolve("Jonson & Johnson").advertiser_id == 3
    strict = AdvertiserResolver.from_table(ADVERTISERS, ResolverConfig(score_cutoff=95))
    assert strict.resolve("Sephorra").method == "unresolved"
    assert (
        AdvertiserResolver.from_table(ADVERTISERS, ResolverConfig(use_fuzzy=False))
        .resolve("Sephorra")
        .advertiser_id
        is None
    )


def test_short_names_are_not_fuzzy_matched(resolver: AdvertiserResolver) -> None:
    r = resolver.resolve("H")
    assert r.advertiser_id is None and r.method == "unresolved"
    assert resolver.resolve("HMM").advertiser_id is None


def test_unresolved_hallucination(resolver: AdvertiserResolver) -> None:
    r = resolver.resolve("Totally Made Up Brand")
    assert (r.advertiser_id, r.method, r.score) == (None, "unresolved", 0.0)
    assert resolver.resolve("").method == "unresolved"


def test_ambiguity_prefers_active_then_lowest_id(resolver: AdvertiserResolver) -> None:
    r = resolver.resolve("Acme")  # 5 is inactive, 6 ('ACME Corp') is active
    assert r.advertiser_id == 6 and r.ambiguous
    r = resolver.resolve("Zenith")  # both active: lowest id
    assert r.advertiser_id == 7 and r.ambiguous
    assert resolver.n_ambiguous_keys >= 2
    only_active = AdvertiserResolver.from_table(ADVERTISERS, ResolverConfig(active_only=True))
    assert only_active.resolve("Acme").advertiser_id == 6 and not only_active.resolve("Acme").ambiguous


def test_resolve_list_dedupes_ids(resolver: AdvertiserResolver) -> None:
    ids, res = resolver.resolve_list(["Sephora", "sephora.com", "Made Up", "H&M", "Sephorra"])
    assert ids == [1, 2]
    assert [r.method for r in res] == ["exact", "domain", "unresolved", "exact", "fuzzy"]


def test_resolve_batch_report(resolver: AdvertiserResolver) -> None:
    ids, report = resolver.resolve_batch(
        [["Sephora", "Fake Co", "Hennes & Mauritz"], ["Fake Co", "Sephorra", "Other"], []]
    )
    assert ids == [[1, 2], [1], []]
    assert report["n_rows"] == 3 and report["n_names"] == 6
    assert report["n_resolved"] == 3 and report["n_unresolved"] == 3
    assert report["n_resolved_by_method"] == {"exact": 1, "alias": 1, "domain": 0, "fuzzy": 1}
    assert report["hallucination_rate"] == pytest.approx(0.5)
    assert report["top_unresolved"][0] == ("Fake Co", 2)
    assert resolver.resolve_batch([])[1]["hallucination_rate"] == 0.0


def test_cache_and_pandas_input() -> None:
    r = AdvertiserResolver.from_table(ADVERTISERS.to_pandas())
    assert isinstance(ADVERTISERS.to_pandas(), pd.DataFrame)
    assert r.resolve("Hennes & Mauritz").advertiser_id == 2  # aliases as numpy arrays
    for _ in range(100):
        r.resolve("Sephorra")
    assert r.cache_info().hits >= 99
    assert r.name_of(1) == "Sephora" and r.name_of(999) is None
    minimal = AdvertiserResolver.from_table(pa.table({"advertiser_id": [9], "name": ["Solo"]}))
    assert minimal.resolve("solo").advertiser_id == 9
