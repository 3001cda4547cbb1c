"""Tests of the simulated world (world/simulate.py) at tiny sizes; no Spark."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from world.config import WorldConfig
from world.schema import CONVERSION_EVENTS, EVENT_TYPES, PARTITIONED, SCHEMAS, RawLayout, validate_table
from world.simulate import simulate

USERS, ADVERTISERS, DAYS = 150, 120, 40
END = date(2026, 6, 30)
START = END - timedelta(days=DAYS - 1)
TRUTH_TABLES = ("user_params", "affinity", "propensity")


def _cfg(out: Path, **kw) -> WorldConfig:
    base = dict(
        out=out,
        users=USERS,
        advertisers=ADVERTISERS,
        days=DAYS,
        end_date=END,
        seed=0,
        chunk_users=USERS,
        workers=1,
    )
    base.update(kw)
    return WorldConfig(**base)


def _read(path: Path, partitioned: bool = False) -> pa.Table:
    return ds.dataset(path, format="parquet", partitioning="hive" if partitioned else None).to_table()


def _raw(root: Path, name: str) -> pa.Table:
    return _read(RawLayout(root).table(name), partitioned=name in PARTITIONED)


def _sorted(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Rows in a canonical order (by every column unless keys are given), fresh index."""
    keys = keys or list(df.columns)
    return df.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)


def _frames(root: Path) -> dict[str, pd.DataFrame]:
    """Every raw table and the truth tables of one world as canonically sorted pandas frames."""
    truth = RawLayout(root).truth
    out = {
        "events": _sorted(_raw(root, "events").to_pandas()),
        "users": _sorted(_raw(root, "users").to_pandas(), ["user_id"]),
        "advertisers": _sorted(_raw(root, "advertisers").to_pandas(), ["advertiser_id"]),
        "advertiser_daily": _sorted(_raw(root, "advertiser_daily").to_pandas(), ["dt", "advertiser_id"]),
        "items": _sorted(_raw(root, "items").to_pandas(), ["item_id"]),
    }
    for name in TRUTH_TABLES:
        out[f"truth/{name}"] = _sorted(_read(truth / name).to_pandas())
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    """The reference world: simulated once, shared by every test of this module."""
    root = tmp_path_factory.mktemp("sim") / "world"
    summary = simulate(_cfg(root))
    return root, summary


@pytest.fixture(scope="module")
def frames(world) -> dict[str, pd.DataFrame]:
    return _frames(world[0])


@pytest.fixture(scope="module")
def events(frames) -> pd.DataFrame:
    return frames["events"]


def _variant(tmp_path_factory, name: str, **kw) -> tuple[Path, dict[str, pd.DataFrame]]:
    root = tmp_path_factory.mktemp(name) / "world"
    simulate(_cfg(root, **kw))
    return root, _frames(root)


# ---------------------------------------------------------------------------------------------
# Contract
# ---------------------------------------------------------------------------------------------


def test_every_raw_table_exists_and_validates(world):
    root, summary = world
    assert sorted(p.name for p in root.iterdir()) == sorted(SCHEMAS), "data root holds exactly the raw tables"
    for name in SCHEMAS:
        path = RawLayout(root).table(name)
        assert path.is_dir() and any(path.rglob("*.parquet")), name
        table = _raw(root, name)
        assert table.num_rows > 0, name
        if name in PARTITIONED:
            assert all(p.name.startswith("dt=") for p in path.iterdir()), name
            validate_table(table.drop(["dt"]), name)
        validate_table(table, name)  # conform drops dt itself
    assert summary["users"] == USERS
    assert summary["advertisers"] == ADVERTISERS
    assert summary["events"] == _raw(root, "events").num_rows


def test_users_and_items(frames):
    users = frames["users"]
    assert users["user_id"].tolist() == list(range(USERS))
    assert set(users["user_state"]) <= {"new", "casual", "core", "resurrected"}
    items, adv = frames["items"], frames["advertisers"]
    assert items["item_id"].is_unique
    assert set(items["advertiser_id"]) == set(adv["advertiser_id"]), "every advertiser has items"
    assert (items["price"] > 0).all()


def test_events_partition_matches_timestamp(events):
    day = events["ts"].dt.strftime("%Y-%m-%d")
    assert (day == events["dt"].astype(str)).all()


# ---------------------------------------------------------------------------------------------
# Determinism and chunking
# ---------------------------------------------------------------------------------------------


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], names=None) -> None:
    for name in names or a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_same_seed_same_world(frames, tmp_path_factory):
    _, again = _variant(tmp_path_factory, "again")
    _assert_same(frames, again)


def test_different_seed_different_events(events, tmp_path_factory):
    other = _variant(tmp_path_factory, "seed1", seed=1)[1]["events"]
    assert len(other) != len(events) or not other.equals(events)
    # Not just a reshuffle: the per-user event counts differ.
    assert not events.groupby("user_id").size().equals(other.groupby("user_id").size())


def test_chunking_and_workers_do_not_change_the_world(frames, tmp_path_factory):
    small_root, small = _variant(tmp_path_factory, "chunk50", chunk_users=50)
    _assert_same(frames, small)
    par_root, parallel = _variant(tmp_path_factory, "chunk50w2", chunk_users=50, workers=2)
    _assert_same(small, parallel)
    for root in (small_root, par_root):
        assert len(list((root / "users").glob("*.parquet"))) == 3, "three chunks written"


# ---------------------------------------------------------------------------------------------
# Advertisers: curated real brands and brand groups
# ---------------------------------------------------------------------------------------------


def test_curated_brands_and_brand_groups(frames):
    adv = frames["advertisers"]
    names = set(adv["name"])
    for brand in ("Nike", "Sephora", "IKEA", "Gap", "Old Navy"):
        assert brand in names, brand
    assert adv["advertiser_id"].is_unique and adv["name"].str.lower().is_unique
    gap = adv.loc[adv["brand_group"] == "Gap Inc", "name"]
    assert len(gap) >= 3, gap.tolist()
    assert (adv["brand_group"].value_counts() >= 2).sum() >= 5, "several brand groups with several members"
    assert adv["category"].str.contains(">").all()
    assert adv["domain"].str.contains(".", regex=False).all()
    assert 0 < (~adv["is_active"]).sum() < len(adv) // 4


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


def test_truth_is_beside_not_under_the_data_root(world):
    root, _ = world
    truth = RawLayout(root).truth
    assert truth.is_dir()
    assert not truth.resolve().is_relative_to(root.resolve())
    for name in TRUTH_TABLES:
        assert any((truth / name).glob("*.parquet")), name
    assert not list(root.rglob("*propensity*")) and not list(root.rglob("*affinity*"))
    assert not list(root.rglob("*user_params*"))


def test_propensity_is_bounded_by_rate(frames):
    prop, params = frames["truth/propensity"], frames["truth/user_params"]
    assert len(prop) > 0
    assert (prop["propensity"] >= 0).all()
    assert set(prop["user_id"]) <= set(params["user_id"])
    assert params["user_id"].is_unique and len(params) == USERS
    per_day = prop.groupby(["user_id", "dt"])["propensity"].sum().rename("total").reset_index()
    per_day = per_day.merge(params[["user_id", "rate"]], on="user_id")
    over = per_day[per_day["total"] > per_day["rate"] + 1e-9]
    assert over.empty, over.head()
    # Propensity covers only the last truth_days days of the window, and only known advertisers.
    truth_days = WorldConfig().truth_days
    days = pd.to_datetime(prop["dt"]).dt.date
    assert days.min() >= END - timedelta(days=truth_days - 1) and days.max() <= END
    assert set(prop["advertiser_id"]) <= set(frames["advertisers"]["advertiser_id"])


def test_affinity_is_normalised(frames):
    aff = frames["truth/affinity"]
    assert (aff["weight"] >= 0).all()
    sums = aff.groupby(["user_id", "phase"])["weight"].sum()
    assert ((sums - 1.0).abs() < 1e-9).all()


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def test_event_types_and_conversions(events, frames):
    assert set(events["event_type"]) <= set(EVENT_TYPES)
    assert {"impression", "click", "offsite_url", "attributed_conversion", "matched_conversion"} <= set(
        events["event_type"]
    )
    conv = events[events["event_type"].isin(CONVERSION_EVENTS)]
    assert len(conv) > 0
    assert conv["advertiser_id"].notna().all()
    assert conv["conversion_type"].notna().all()
    assert set(conv["advertiser_id"].astype("int64")) <= set(frames["advertisers"]["advertiser_id"])
    non_conv = events[~events["event_type"].isin(CONVERSION_EVENTS)]
    assert non_conv["conversion_type"].isna().all()
    assert set(events["user_id"]) <= set(frames["users"]["user_id"])


def test_clicks_have_dwell_time(events):
    clicks = events[events["event_type"] == "click"]
    assert len(clicks) > 0
    assert clicks["duration_s"].notna().all()
    assert (clicks["duration_s"] > 0).all()


@pytest.mark.parametrize(
    ("conversion", "before"), [("ad_conversion", "click"), ("view_conversion", "impression")]
)
def test_ad_conversions_are_preceded(events, conversion, before):
    conv = events.loc[events["event_type"] == conversion, ["user_id", "item_id", "ts"]]
    assert len(conv) > 0, f"no {conversion} in the tiny world"
    assert conv["item_id"].notna().all()
    first = (
        events.loc[events["event_type"] == before]
        .groupby(["user_id", "item_id"])["ts"]
        .min()
        .rename("first")
        .reset_index()
    )
    m = conv.merge(first, on=["user_id", "item_id"], how="left")
    bad = m[m["first"].isna() | (m["first"] >= m["ts"])]
    assert bad.empty, f"{conversion} without an earlier {before} of the same item:\n{bad.head()}"


# ---------------------------------------------------------------------------------------------
# Advertiser daily
# ---------------------------------------------------------------------------------------------


def test_advertiser_daily_covers_every_day(frames):
    daily, adv = frames["advertiser_daily"], frames["advertisers"]
    daily = daily.assign(day=pd.to_datetime(daily["dt"]).dt.date)
    assert not daily.duplicated(["day", "advertiser_id"]).any()
    want = {(START + timedelta(days=d), a) for d in range(DAYS) for a in adv["advertiser_id"]}
    have = set(zip(daily["day"], daily["advertiser_id"], strict=True))
    assert want <= have, f"{len(want - have)} advertiser-days missing"
    assert (daily["spend"] >= 0).all() and (daily["revenue"] >= 0).all()
    assert set(daily["bid_type"]) <= {"OCPM", "ROAS"}
    inactive = set(adv.loc[~adv["is_active"], "advertiser_id"])
    assert inactive
    assert (daily.loc[daily["advertiser_id"].isin(inactive), "spend"] == 0).all()
    active = daily[~daily["advertiser_id"].isin(inactive)]
    assert (active["spend"] > 0).mean() > 0.8, "active advertisers spend on most days"
