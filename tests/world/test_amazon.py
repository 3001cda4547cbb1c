"""Tests of the amazon-scientific adapter (world/amazon.py)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.support.paths import AMAZON_SCIENTIFIC
from world.amazon import AmazonConfig, import_amazon, trailing_conversions
from world.schema import PARTITIONED, SCHEMAS, validate_table

REAL = AMAZON_SCIENTIFIC

ITEMS = {
    "0": {
        "title": "Nitrile Gloves, 100 ct",
        "description": "",
        "brand": "Johnson &amp; Johnson",
        "categories": "Industrial & Scientific,Occupational Health & Safety Products,Gloves",
    },
    "1": {
        "title": "Band &amp; Tape",
        "description": "",
        "brand": "JOHNSON & JOHNSON ",
        "categories": "Industrial & Scientific,Tapes,Medical Tapes",
    },
    "2": {
        "title": "Sterile Pads",
        "description": "",
        "brand": "Johnson & Johnson",
        "categories": "Industrial & Scientific,Occupational Health & Safety Products",
    },
    "3": {
        "title": "PLA Filament 1.75mm",
        "description": "",
        "brand": "HATCHBOX",
        "categories": "Industrial & Scientific,Additive Manufacturing Products,3D Printing Supplies",
    },
    "4": {
        "title": "PETG Filament",
        "description": "",
        "brand": "HATCHBOX",
        "categories": "Industrial & Scientific,Additive Manufacturing Products",
    },
    "5": {
        "title": "Plain Cable Ties",
        "description": "",
        "brand": "Generic",
        "categories": "Industrial & Scientific,Fasteners",
    },
    "6": {"title": "Mystery Screws", "description": "", "brand": "", "categories": ""},
    "7": {
        "title": "Digital Multimeter",
        "description": "",
        "brand": "Fluke",
        "categories": "Industrial & Scientific,Test,Multimeters",
    },
}
INTER = {"0": [0, 3, 5, 1], "1": [6, 4, 3, 7, 2], "2": [5, 6, 7, 7, 0, 3], "10": [1, 5, 6, 4, 2, 3, 7, 0]}
ANCHOR = dt.date(2026, 6, 30)


def _write_inputs(tmp: Path, inter=INTER, items=ITEMS) -> tuple[Path, Path]:
    ip, tp = tmp / "inter.json", tmp / "item.json"
    ip.write_text(json.dumps(inter))
    tp.write_text(json.dumps(items))
    return ip, tp


def _run(tmp: Path, out: str = "data", **kw) -> tuple[dict, Path]:
    ip, tp = _write_inputs(tmp)
    root = tmp / out
    summary = import_amazon(AmazonConfig(inter_path=ip, items_path=tp, out=root, anchor_date=ANCHOR, **kw))
    return summary, root


def _read(root: Path, name: str):
    if name in PARTITIONED:
        return ds.dataset(root / name, format="parquet", partitioning="hive").to_table()
    return pq.read_table(root / name)


@pytest.fixture
def imported(tmp_path):
    return _run(tmp_path)


def test_tables_conform(imported):
    summary, root = imported
    for name, schema in SCHEMAS.items():
        assert (root / name).is_dir(), name
        files = sorted((root / name).rglob("*.parquet"))
        assert files, name
        for f in files:
            file_schema = pq.read_schema(f)
            if name in PARTITIONED:
                assert f.parent.name.startswith("dt=")
                dt.date.fromisoformat(f.parent.name[3:])
                assert "dt" not in file_schema.names
                assert file_schema.names == [n for n in schema.names if n != "dt"]
            else:
                assert file_schema.equals(schema), name
        validate_table(_read(root, name), name)  # dt from the path is dropped or cast by conform
    assert summary["users"] == 4
    assert summary["events"] == sum(len(v) for v in INTER.values())
    assert summary["advertisers"] == 3
    assert summary["masked_items"] == 2
    users = _read(root, "users").to_pylist()
    assert sorted(u["user_id"] for u in users) == [0, 1, 2, 10]
    assert all(u["gender"] == "unknown" and u["country"] == "US" and u["age"] is None for u in users)


def test_brand_unescape_and_merge(imported):
    _, root = imported
    adv = {a["name"]: a for a in _read(root, "advertisers").to_pylist()}
    assert set(adv) == {"Johnson & Johnson", "HATCHBOX", "Fluke"}
    # dense ids by sorted normalised brand
    assert [adv[n]["advertiser_id"] for n in ("Fluke", "HATCHBOX", "Johnson & Johnson")] == [0, 1, 2]
    jj = adv["Johnson & Johnson"]
    assert jj["aliases"] == ["JOHNSON & JOHNSON", "Johnson &amp; Johnson"]
    assert jj["brand_group"] == "Johnson & Johnson"
    assert jj["category"] == "Industrial & Scientific > Occupational Health & Safety Products"
    assert jj["domain"] == "" and jj["is_active"] is True
    assert adv["HATCHBOX"]["aliases"] == []
    items = {r["item_id"]: r for r in _read(root, "items").to_pylist()}
    assert {items[i]["advertiser_id"] for i in (0, 1, 2)} == {jj["advertiser_id"]}
    assert items[1]["title"] == "Band & Tape"
    assert (
        items[3]["category"]
        == "Industrial & Scientific > Additive Manufacturing Products > 3D Printing Supplies"
    )
    ev = _read(root, "events").to_pylist()
    assert {e["brand"] for e in ev if e["item_id"] in (0, 1, 2)} == {"Johnson & Johnson"}


def test_masked_brands_have_no_advertiser(imported):
    _, root = imported
    ev = _read(root, "events").to_pylist()
    masked = [e for e in ev if e["item_id"] in (5, 6)]
    assert masked
    assert all(e["advertiser_id"] is None and e["brand"] is None for e in masked)
    assert all(e["advertiser_id"] is not None for e in ev if e["item_id"] not in (5, 6))
    assert all(e["event_type"] == "attributed_conversion" and e["conversion_type"] == "purchase" for e in ev)
    assert {e["text"] for e in masked} == {"Plain Cable Ties", "Mystery Screws"}
    item_ids = set(_read(root, "items").column("item_id").to_pylist())
    assert item_ids == {0, 1, 2, 3, 4, 7}


def test_order_and_dates(imported):
    _, root = imported
    ev = _read(root, "events").to_pylist()
    users = {u["user_id"]: u for u in _read(root, "users").to_pylist()}
    for key, seq in INTER.items():
        uid = int(key)
        mine = [e for e in ev if e["user_id"] == uid]
        mine.sort(key=lambda e: e["ts"])
        assert [e["item_id"] for e in mine] == seq
        ts = [e["ts"] for e in mine]
        assert all(a < b for a, b in itertools.pairwise(ts))
        assert all(t.utcoffset() == dt.timedelta(0) for t in ts)
        last = ts[-1].date()
        assert ANCHOR < last <= ANCHOR + dt.timedelta(days=7)
        assert all(t.date() <= ANCHOR for t in ts[:-1])
        assert all(e["dt"] == e["ts"].date().isoformat() for e in mine)
        assert users[uid]["signup_date"] == ts[0].date()


def test_advertiser_daily(imported):
    summary, root = imported
    daily = _read(root, "advertiser_daily").to_pylist()
    days = sorted({d["dt"] for d in daily})
    assert days[-1] == (ANCHOR + dt.timedelta(days=7)).isoformat()
    assert days[0] >= (ANCHOR - dt.timedelta(days=180)).isoformat()
    assert len(daily) == len(days) * summary["advertisers"]
    assert all(d["spend"] == 100.0 and d["bid_type"] == "OCPM" for d in daily)
    # revenue of (d, a) = a's conversions in (d - 365 days, d]: a popularity proxy (the data has no revenue)
    ev = [e for e in _read(root, "events").to_pylist() if e["advertiser_id"] is not None]
    for d in daily:
        day = dt.date.fromisoformat(d["dt"])
        lo = (day - dt.timedelta(days=365)).isoformat()
        expect = sum(1 for e in ev if e["advertiser_id"] == d["advertiser_id"] and lo < e["dt"] <= d["dt"])
        assert d["revenue"] == expect, d
    assert any(d["revenue"] > 0 for d in daily if d["dt"] == ANCHOR.isoformat())


def test_trailing_conversions_window():
    ev_days = np.array([10, 10, 12, 15, 15, 15, 20])
    ev_adv = np.array([0, 1, 0, 1, -1, 1, 0])
    m = trailing_conversions(ev_days, ev_adv, n_adv=2, first_day=10, last_day=20, window=3)
    assert m.shape == (11, 2)
    for i, d in enumerate(range(10, 21)):
        for a in (0, 1):
            assert m[i, a] == sum(
                1 for x, y in zip(ev_days, ev_adv, strict=True) if y == a and d - 3 < x <= d
            )
    one = trailing_conversions(ev_days, ev_adv, 2, 10, 20, window=1)  # window 1 = that day's conversions
    assert one[5].tolist() == [0, 2] and one.sum() == 6
    with pytest.raises(ValueError, match="revenue_window_days"):
        trailing_conversions(ev_days, ev_adv, 2, 10, 20, window=0)


def test_deterministic(tmp_path):
    s1, r1 = _run(tmp_path, "a", seed=7)
    s2, r2 = _run(tmp_path, "b", seed=7)
    _, r3 = _run(tmp_path, "c", seed=8)
    assert s1 == s2
    for name in SCHEMAS:
        assert _read(r1, name).equals(_read(r2, name)), name
    assert not _read(r1, "events").equals(_read(r3, "events"))


def test_missing_item_names_user_and_item(tmp_path):
    ip, tp = _write_inputs(tmp_path, inter={"0": [0, 1], "5": [3, 99]})
    with pytest.raises(ValueError, match=r"user '5'.*item index 99") as err:
        import_amazon(AmazonConfig(inter_path=ip, items_path=tp, out=tmp_path / "out"))
    assert "inter.json" in str(err.value)


def test_malformed_json(tmp_path):
    ip, tp = _write_inputs(tmp_path, items={**ITEMS, "x": ITEMS["0"]})
    with pytest.raises(ValueError, match=r"item.json.*'x'"):
        import_amazon(AmazonConfig(inter_path=ip, items_path=tp, out=tmp_path / "out"))


@pytest.mark.skipif(not (REAL / "Scientific.inter.json").exists(), reason="amazon-scientific data absent")
def test_real_data(tmp_path):
    summary = import_amazon(
        AmazonConfig(
            inter_path=REAL / "Scientific.inter.json",
            items_path=REAL / "Scientific.item.json",
            out=tmp_path / "amazon",
        )
    )
    assert summary["users"] == 8317
    assert summary["events"] == 58492
    assert summary["last_item_unmasked_frac"] >= 0.95
    events = ds.dataset(tmp_path / "amazon" / "events", format="parquet", partitioning="hive")
    assert events.count_rows() == 58492
