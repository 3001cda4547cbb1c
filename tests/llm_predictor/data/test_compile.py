"""Spark example compilation on hand-built raw tables with known answers (paper 3.2)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from adprior.contracts import LIST_FIELDS
from llm_predictor.data.compile import CompileConfig, compile_examples
from llm_predictor.data.compiled import load_examples, load_preset_pool
from tests.conftest import ts, write_raw

X = date(2026, 6, 10)  # anchor date: features use ts < 2026-06-11 00:00, labels (x, x+7d]


def _adv(i: int, name: str, active: bool = True) -> dict:
    return dict(
        advertiser_id=i,
        name=name,
        aliases=[],
        domain=f"{name.lower()}.com",
        brand_group=name,
        category="Apparel > Athletic",
        is_active=active,
    )


def _user(i: int, country: str = "US") -> dict:
    return dict(
        user_id=i, age=30, gender="female", user_state="core", country=country, signup_date=date(2025, 1, 1)
    )


def _conv(
    uid: int,
    when: str,
    adv: int,
    kind: str = "matched_conversion",
    ctype: str = "purchase",
    text: str = "item",
) -> dict:
    return dict(
        user_id=uid,
        ts=ts(when),
        event_type=kind,
        text=text,
        advertiser_id=adv,
        category="Apparel > Athletic",
        brand=None,
        conversion_type=ctype,
        value=10.0,
    )


def _ev(uid: int, when: str, kind: str, text: str, **kw) -> dict:
    return dict(user_id=uid, ts=ts(when), event_type=kind, text=text, **kw)


ALPHA, BETA, GAMMA, DELTA, EPS = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory, spark) -> Path:
    root = tmp_path_factory.mktemp("raw")
    advs = [
        _adv(ALPHA, "Alpha"),
        _adv(BETA, "Beta"),
        _adv(GAMMA, "Gamma", active=False),
        _adv(DELTA, "Delta"),
        _adv(EPS, "Eps"),
    ]
    daily = []
    for d in range(-100, 12):
        day = X + timedelta(days=d)
        for a in advs:
            spend = 100.0
            if a["advertiser_id"] == GAMMA or (a["advertiser_id"] == DELTA and day == date(2026, 6, 12)):
                spend = 0.0
            revenue = {ALPHA: 900.0, BETA: 500.0, GAMMA: 9999.0, DELTA: 300.0, EPS: 100.0}[a["advertiser_id"]]
            daily.append(
                dict(dt=day, advertiser_id=a["advertiser_id"], spend=spend, revenue=revenue, bid_type="OCPM")
            )
    users = [_user(i) for i in (1, 2, 3, 5, 6, 7)] + [_user(4, country="CA")]
    ev: list[dict] = []
    # u1: the label is Beta on 06-14, the first conversion that qualifies.
    ev += [
        _conv(1, "2026-06-01 10:00:00", ALPHA, text="alpha shoes"),
        _conv(1, "2026-06-02 10:00:00", GAMMA, text="gamma shoes"),  # inactive: not an active advertiser
        _ev(1, "2026-06-01 09:00:00", "onsite_search", "Running Shoes"),
        _ev(1, "2026-06-05 09:00:00", "onsite_search", "yoga mat"),
        _ev(1, "2026-06-08 09:00:00", "onsite_search", "running shoes"),
        _ev(1, "2026-06-10 23:59:59", "onsite_search", "late query"),
        _ev(1, "2026-05-20 09:00:00", "offsite_url", "https://old.example/url"),  # > 14 days: excluded
        _ev(1, "2026-06-05 09:00:00", "offsite_url", "https://beta.com/p/1", brand="Beta"),
        # After the anchor: never in features. Every such text contains FUTURE.
        _ev(1, "2026-06-11 00:00:00", "onsite_search", "FUTURE query at cutoff"),
        _ev(
            1,
            "2026-06-12 00:00:00",
            "offsite_url",
            "https://FUTURE.com",
            brand="FUTURE brand",
            category="FUTURE cat",
        ),
        _conv(1, "2026-06-12 08:00:00", DELTA, text="FUTURE delta"),  # Delta has no spend that day
        _conv(1, "2026-06-12 09:00:00", GAMMA, text="FUTURE gamma"),  # Gamma inactive
        _conv(1, "2026-06-13 09:00:00", BETA, ctype="page_visit", text="FUTURE low priority"),
        _conv(
            1, "2026-06-14 09:00:00", BETA, kind="attributed_conversion", ctype="checkout", text="FUTURE beta"
        ),
        _conv(1, "2026-06-15 09:00:00", ALPHA, text="FUTURE alpha later"),
    ]
    # u2: served, but its only future conversion is outside (x, x+7d]; the one at 23:00 on x is past.
    ev += [
        _conv(2, "2026-06-01 10:00:00", EPS),
        _conv(2, "2026-06-10 23:00:00", ALPHA, text="on anchor day"),
        _conv(2, "2026-06-18 00:00:01", ALPHA, text="FUTURE outside window"),
    ]
    # u3: last conversion more than 90 days before x -> not served.
    ev += [_conv(3, "2026-02-01 10:00:00", ALPHA), _conv(3, "2026-06-12 10:00:00", ALPHA, text="FUTURE u3")]
    # u4: not in a serving country.
    ev += [_conv(4, "2026-06-01 10:00:00", ALPHA), _conv(4, "2026-06-12 10:00:00", ALPHA, text="FUTURE u4")]
    # u5: V0 (>= 10 matched and >= 10 attributed); u6: 10 matched, 9 attributed -> not V0.
    for i in range(10):
        ev.append(_conv(5, f"2026-05-{10 + i:02d} 10:00:00", EPS, kind="matched_conversion", text=f"m{i}"))
        ev.append(_conv(5, f"2026-05-{10 + i:02d} 11:00:00", EPS, kind="attributed_conversion", text=f"a{i}"))
        ev.append(_conv(6, f"2026-05-{10 + i:02d} 10:00:00", EPS, kind="matched_conversion", text=f"m{i}"))
        if i < 9:
            ev.append(
                _conv(6, f"2026-05-{10 + i:02d} 11:00:00", EPS, kind="attributed_conversion", text=f"a{i}")
            )
    # u7: two qualifying conversions on the last day of the window; the earlier one is the label.
    ev += [
        _conv(7, "2026-06-01 10:00:00", EPS),
        _conv(7, "2026-06-17 23:59:59", ALPHA, text="FUTURE later"),
        _conv(7, "2026-06-17 12:00:00", DELTA, text="FUTURE earlier"),
    ]
    write_raw(root, {"advertisers": advs, "advertiser_daily": daily, "users": users, "events": ev})
    out = tmp_path_factory.mktemp("examples")
    compile_examples(CompileConfig(data=root, out=out, anchor_dates=[X], tokenizer=None), spark=spark)
    return out


def _rows(out: Path) -> dict[int, dict]:
    df = load_examples(out, X)
    return {int(r["user_id"]): r for r in df.to_dict("records")}


def test_serving_population(compiled: Path) -> None:
    rows = _rows(compiled)
    assert set(rows) == {1, 2, 5, 6, 7}  # u3: no conversion in 90 days; u4: not US


def test_label_is_first_qualifying_conversion(compiled: Path) -> None:
    rows = _rows(compiled)
    assert rows[1]["label_advertiser_id"] == BETA
    assert rows[1]["label_advertiser_name"] == "Beta"
    assert rows[1]["label_conversion_type"] == "checkout"
    assert pd.isna(rows[2]["label_advertiser_id"])  # only conversion is after x+7d
    assert rows[7]["label_advertiser_id"] == DELTA  # earlier of two in the window
    assert pd.isna(rows[5]["label_advertiser_id"])


def test_no_feature_uses_events_after_anchor(compiled: Path) -> None:
    df = load_examples(compiled, X)
    for c in LIST_FIELDS:  # every list-valued text feature
        for values in df[c]:
            assert not any("FUTURE" in v for v in values), (c, values)
    rows = _rows(compiled)
    assert rows[1]["last_event_ts"] < pd.Timestamp("2026-06-11", tz="UTC")
    assert "on anchor day" in rows[2]["matched_conversions"]  # 23:00 on x is still the past


def test_lists_newest_first_and_deduplicated(compiled: Path) -> None:
    rows = _rows(compiled)
    assert list(rows[1]["onsite_searches"]) == ["late query", "running shoes", "yoga mat"]
    assert list(rows[1]["offsite_urls"]) == ["https://beta.com/p/1"]  # 05-20 is past the 14-day window
    assert list(rows[2]["matched_conversions"]) == ["on anchor day", "item"]
    assert list(rows[1]["active_advertisers"]) == ["Alpha"]  # Gamma is inactive
    assert list(rows[2]["active_advertiser_ids"]) == [ALPHA, EPS]
    assert list(rows[1]["top_brands"]) == ["Beta"]
    assert list(rows[5]["matched_conversions"])[:3] == ["m9", "m8", "m7"]


def test_v0_filter(compiled: Path) -> None:
    rows = _rows(compiled)
    assert rows[5]["in_v0"] and rows[5]["n_matched"] == 10 and rows[5]["n_attributed"] == 10
    assert not rows[6]["in_v0"] and rows[6]["n_attributed"] == 9
    assert not rows[1]["in_v0"]


def test_preset_pool_top_revenue_active_spending(compiled: Path) -> None:
    assert load_preset_pool(compiled, X) == ["Alpha", "Beta", "Delta", "Eps"]  # Gamma: inactive, no spend


def test_split_by_user_is_stable_and_disjoint(tmp_path: Path, spark) -> None:
    n = 600
    advs = [_adv(ALPHA, "Alpha")]
    d2 = X + timedelta(days=7)
    daily = [
        dict(dt=X + timedelta(days=d), advertiser_id=ALPHA, spend=1.0, revenue=1.0, bid_type="OCPM")
        for d in range(-5, 20)
    ]
    users = [_user(i) for i in range(n)]
    ev = [_conv(i, "2026-06-05 10:00:00", ALPHA) for i in range(n)]
    write_raw(
        tmp_path / "raw", {"advertisers": advs, "advertiser_daily": daily, "users": users, "events": ev}
    )
    compile_examples(
        CompileConfig(data=tmp_path / "raw", out=tmp_path / "ex", anchor_dates=[X, d2], tokenizer=None),
        spark=spark,
    )
    df = load_examples(tmp_path / "ex")
    assert len(df) == 2 * n
    per_user = df.groupby("user_id")["split"].nunique()
    assert (per_user == 1).all()  # a user is on one side on every date
    train = set(df.loc[df["split"] == "train", "user_id"])
    evals = set(df.loc[df["split"] == "eval", "user_id"])
    assert not train & evals
    assert 0.05 < len(evals) / n < 0.15


def test_corrupt_events_fail_naming_column_and_row(tmp_path: Path, spark) -> None:
    from world.schema import ContractError

    advs = [_adv(ALPHA, "Alpha")]
    daily = [dict(dt=X, advertiser_id=ALPHA, spend=1.0, revenue=1.0, bid_type="OCPM")]
    write_raw(
        tmp_path / "raw",
        {
            "advertisers": advs,
            "advertiser_daily": daily,
            "users": [_user(1)],
            "events": [_conv(1, "2026-06-05 10:00:00", ALPHA)],
        },
    )
    # A second shard written by a broken producer: an event type outside the contract.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from world.schema import SCHEMAS

    bad = {f: [None] for f in SCHEMAS["events"].names}
    bad.update(user_id=[42], ts=[ts("2026-06-06 10:00:00")], event_type=["teleport"])
    t = pa.table({f: pa.array(v, type=SCHEMAS["events"].field(f).type) for f, v in bad.items()})
    (tmp_path / "raw" / "events" / "dt=2026-06-06").mkdir(parents=True)
    pq.write_table(t, tmp_path / "raw" / "events" / "dt=2026-06-06" / "bad.parquet")
    with pytest.raises(ContractError, match=r"column 'event_type'.*teleport.*bad\.parquet.*42"):
        compile_examples(
            CompileConfig(data=tmp_path / "raw", out=tmp_path / "ex", anchor_dates=[X], tokenizer=None),
            spark=spark,
        )


def test_missing_column_fails_naming_it(tmp_path: Path, spark) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from world.schema import ContractError

    write_raw(
        tmp_path / "raw",
        {
            "advertisers": [_adv(ALPHA, "Alpha")],
            "users": [_user(1)],
            "events": [_conv(1, "2026-06-05 10:00:00", ALPHA)],
        },
    )
    (tmp_path / "raw" / "advertiser_daily" / "dt=2026-06-10").mkdir(parents=True)
    pq.write_table(
        pa.table({"advertiser_id": [ALPHA], "spend": [1.0], "bid_type": ["OCPM"]}),
        tmp_path / "raw" / "advertiser_daily" / "dt=2026-06-10" / "p.parquet",
    )
    with pytest.raises(ContractError, match=r"advertiser_daily.*column 'revenue'.*missing"):
        compile_examples(
            CompileConfig(data=tmp_path / "raw", out=tmp_path / "ex", anchor_dates=[X], tokenizer=None),
            spark=spark,
        )
