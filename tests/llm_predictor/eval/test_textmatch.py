"""Evaluation finds advertisers named in user texts with the resolver's name normaliser (non-ASCII included)."""

from __future__ import annotations

import pandas as pd

from llm_predictor.data.resolver import AdvertiserResolver, normalize_name
from llm_predictor.eval.candidates import category_key
from llm_predictor.eval.config import GBDTConfig
from llm_predictor.eval.reranker import GBDTReranker
from llm_predictor.eval.textmatch import NameIndex, name_keys, text_tokens

ADVERTISERS = pd.DataFrame(
    {
        "advertiser_id": [1, 2, 3, 4, 5],
        "name": ["Café Müller", "ソニー", "Nike", "The North Face", "Crate & Barrel"],
        "aliases": [[], [], [], [], []],
        "domain": [None, None, "nike.com", "thenorthface.com", None],
        "brand_group": [None] * 5,
        "category": ["Food > Cafés", "Electronics / TV", None, "Outdoor > Jackets", "Home > Furniture"],
        "is_active": [True] * 5,
    }
)


def test_non_ascii_names_match_as_the_resolver_resolves_them():
    resolver = AdvertiserResolver.from_table(ADVERTISERS)
    index = NameIndex(ADVERTISERS.to_dict("records"))
    texts = {
        1: "CAFE MULLER berlin",
        2: "ソニー テレビ 4k",
        4: "north face jacket",
        5: "crate and barrel sofa",
    }
    for aid, text in texts.items():
        name = ADVERTISERS.set_index("advertiser_id").loc[aid, "name"]
        assert normalize_name(name) in name_keys(name)  # one normaliser: the resolver's key is a match key
        assert index.find(text) == {aid}, text
    # the resolver reads the same spellings as the same advertisers
    for spelling, aid in (("CAFE MULLER", 1), ("café müller", 1), ("ソニー", 2), ("Crate and Barrel", 5)):
        assert resolver.resolve(spelling).advertiser_id == aid
        assert index.find(spelling) == {aid}
    assert text_tokens("Ｓｏｎｙ &amp; Müller's") == ["sony", "and", "mullers"]
    assert index.find("nike.com/running") == {3} and index.find("nothing here") == set()


def test_reranker_text_features_see_non_ascii_names():
    rr = GBDTReranker(GBDTConfig(), ADVERTISERS)
    row = {
        "user_id": 1,
        "anchor_date": "2026-06-22",
        "onsite_searches": ["ソニー テレビ"],
        "top_brands": ["Cafe Muller"],
    }
    cands, x = rr.row_candidates(row)
    f = {n: i for i, n in enumerate(rr.feature_names)}
    assert x[cands.index(2)][f["onsite_searches_first"]] == 0
    assert x[cands.index(1)][f["top_brands_first"]] == 0
    assert category_key("Food > Cafés") == ("food", "cafés") == category_key(" food /  CAFÉS ")
