"""The Spark query behind :func:`llm_predictor.data.compile.compile_examples`: every anchor date in one pass.

Physical plan, whatever the number of anchor dates (``explain()`` shows it):

1. Scan ``events`` once: only the dt partitions some anchor date reads, only the columns used. The raw
   contract is checked in the projection right above the scan (a bad row raises a Spark error naming
   column, file and row; :data:`CONTRACT_MARK` lets the caller turn it into ``ContractError``).
2. One row per (event, anchor date whose window holds it), then the ONE shuffle of the job: by
   (anchor, user_id). Everything after it stays in its partition.
3. Broadcast joins: the advertiser's name when it is active; whether it spent on the event's day.
4. Each event becomes the items it feeds (a list entry, an active advertiser, a label candidate, the
   serving flag, the V0 counts, the last event time); a hash aggregate by (anchor, user, item) dedups
   them; a second aggregate by (anchor, user) collects lists, counts and the label.
5. Broadcast join with the users of the serving countries; rows shaped to ``EXAMPLE_SCHEMA``.

Built-in functions only: no Python UDF, nothing collected to the driver. The expressions are SQL text
(one py4j call each instead of one per Column operation: building this plan with Column objects took
~12k driver round trips, ~2 s). Time literals are UTC (the session time zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from adprior.contracts import EXAMPLE_SCHEMA
from adprior.io import read_raw
from world.schema import CONVERSION_EVENTS, CONVERSION_PRIORITY, EVENT_TYPES, RawLayout

if TYPE_CHECKING:
    from llm_predictor.data.compile import CompileConfig

CONTRACT_MARK = ("<<adprior-contract:", ":adprior-contract>>")  # brackets the message of a contract error

RECENT = (
    "attributed_conversions",
    "matched_conversions",
    "onsite_searches",
    "offsite_searches",
    "offsite_urls",
)
TOP = ("top_categories", "top_brands")
# Item kinds (f) after the list fields, whose codes are their positions in RECENT + TOP.
ACTIVE, LABEL, SERVED, N_ATTR, N_MATCHED, LAST = range(len(RECENT) + len(TOP), len(RECENT) + len(TOP) + 6)
_EVENT_COLUMNS = (
    "user_id",
    "ts",
    "event_type",
    "text",
    "advertiser_id",
    "category",
    "brand",
    "conversion_type",
)
_RECENT_ENTRY, _TOP_ENTRY = ("ts", "v", "k", "n"), ("n", "ts", "v", "k")  # sort orders, newest / most first


def sql_str(s: str) -> str:
    """``s`` as a Spark SQL string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(sql_str(v) for v in values)


def _ts(t: datetime) -> str:
    return f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'"


def _date(d: date) -> str:
    return f"DATE '{d.isoformat()}'"


@dataclass(frozen=True)
class AnchorBounds:
    """The time bounds of one anchor date x."""

    x: date
    cut: datetime  # features use ts < cut = x + 1 day (UTC midnight)
    lo_dt: date  # the dt partitions read: [lo_dt, hi_dt]
    hi_dt: date
    bounds: tuple[tuple[str, datetime], ...]  # (name, timestamp): cut, label_end and each lookback start

    @classmethod
    def of(cls, cfg: CompileConfig, x: date) -> AnchorBounds:
        cut = datetime(x.year, x.month, x.day) + timedelta(days=1)
        back = {
            "lo_serve": cfg.serving_lookback_days,
            "lo_search": cfg.search_lookback_days,
            "lo_url": cfg.url_lookback_days,
            "lo_conv": cfg.conversion_lookback_days,
            "lo_cat": cfg.category_lookback_days,
        }
        bounds = [("cut", cut), ("label_end", cut + timedelta(days=cfg.label_days))]
        bounds += [(k, cut - timedelta(days=d)) for k, d in back.items()]
        return cls(
            x=x,
            cut=cut,
            lo_dt=x - timedelta(days=cfg.longest_lookback_days() + 1),
            hi_dt=x + timedelta(days=cfg.label_days + 1),
            bounds=tuple(bounds),
        )

    def reads(self) -> str:
        return f"CAST(dt AS DATE) BETWEEN {_date(self.lo_dt)} AND {_date(self.hi_dt)}"


class Anchors:
    """The anchor dates of one compile and the SQL that picks a row's own anchor (column ``_i``)."""

    def __init__(self, cfg: CompileConfig, anchors: list[date]) -> None:
        self.wins = [AnchorBounds.of(cfg, x) for x in anchors]
        self.many = len(self.wins) > 1
        # One anchor: no index column (a literal key would hide that the shuffle by user groups the rows).
        self.keys = ["_i", "user_id"] if self.many else ["user_id"]

    def pick(self, values: list[str]) -> str:
        """SQL: ``values[_i]``, or the only value."""
        return f"element_at(array({', '.join(values)}), _i + 1)" if self.many else values[0]

    def bound(self, name: str) -> str:
        return self.pick([_ts(dict(w.bounds)[name]) for w in self.wins])

    def reads(self) -> str:
        return " OR ".join(f"({w.reads()})" for w in self.wins)


def _check(path: Path) -> str:
    """SQL for user_id that raises on an event breaking the contract, naming column, value, file and row.

    It sits in the projection right above the scan, in a column every later step uses, so it runs on
    every event read and costs no extra pass."""
    tests = [
        ("user_id", "user_id IS NULL", "NULL"),
        ("ts", "ts IS NULL", "NULL"),
        ("event_type", f"event_type IS NULL OR event_type NOT IN ({_in(EVENT_TYPES)})", "event_type"),
        (
            "conversion_type",
            f"conversion_type IS NOT NULL AND conversion_type NOT IN ({_in(list(CONVERSION_PRIORITY))})",
            "conversion_type",
        ),
    ]
    column = "CASE " + " ".join(f"WHEN {t} THEN '{c}'" for c, t, _ in tests) + " END"
    value = "CASE " + " ".join(f"WHEN {t} THEN {v}" for _, t, v in tests) + " END"
    row = "to_json(named_struct(" + ", ".join(f"'{c}', {c}" for c in (*_EVENT_COLUMNS, "dt")) + "))"
    head, mid = sql_str(f"{CONTRACT_MARK[0]}table 'events' at {path}: column '"), sql_str("' is invalid (")
    message = (
        f"concat({head}, {column}, {mid}, coalesce({value}, 'null'), ') in file ', "
        f"input_file_name(), ', row ', {row}, {sql_str(CONTRACT_MARK[1])})"
    )
    return (
        f"coalesce(CASE WHEN {column} IS NOT NULL THEN CAST(raise_error({message}) AS BIGINT) END, user_id)"
    )


def _events(raw: dict[str, DataFrame], cfg: CompileConfig, a: Anchors, path: Path) -> DataFrame:
    """The events of every anchor window, one row per (event, anchor), shuffled by (anchor, user)."""
    cols = [f"{_check(path)} AS user_id" if cfg.validate else "user_id", *_EVENT_COLUMNS[1:]]
    ev = raw["events"].where(a.reads())
    if a.many:  # an event feeds every anchor whose window holds it; _i = the anchor's index
        hit = ", ".join(f"CASE WHEN {w.reads()} THEN {i} END" for i, w in enumerate(a.wins))
        ev = ev.selectExpr(*cols, f"explode(array({hit})) AS _i").where("_i IS NOT NULL")
    else:
        ev = ev.selectExpr(*cols)
    return ev.repartition(*a.keys)


def _items(ev: DataFrame, cfg: CompileConfig, a: Anchors) -> DataFrame:
    """Each event exploded into the items it feeds: (f = item kind, t, id, c, ts)."""
    b = a.bound
    past = f"ts < {b('cut')}"

    def since(lo: str) -> str:
        return f"ts >= {b(lo)} AND {past}"

    conv = f"event_type IN ({_in(CONVERSION_EVENTS)})"
    category = r"regexp_replace(category, '\\s*>\\s*', ' / ')"
    cat_types = (
        "attributed_conversion",
        "matched_conversion",
        "onsite_search",
        "offsite_search",
        "offsite_url",
    )
    specs = [  # the list fields, in RECENT + TOP order: (condition, value)
        (f"event_type = 'attributed_conversion' AND {since('lo_conv')}", "text"),
        (f"event_type = 'matched_conversion' AND {since('lo_conv')}", "text"),
        (f"event_type = 'onsite_search' AND {since('lo_search')}", "text"),
        (f"event_type = 'offsite_search' AND {since('lo_search')}", "text"),
        (f"event_type = 'offsite_url' AND {since('lo_url')}", "text"),
        (f"event_type IN ({_in(cat_types)}) AND {since('lo_cat')}", category),
        (f"event_type IN ({_in(cat_types[:2] + cat_types[3:])}) AND {since('lo_cat')}", "brand"),
    ]

    def item(f: int, cond: str, t: str = "NULL", id_: str = "NULL", c: str = "NULL") -> str:
        return (
            f"CASE WHEN {cond} THEN named_struct('f', {f}, 't', CAST({t} AS STRING), "
            f"'id', CAST({id_} AS BIGINT), 'c', CAST({c} AS STRING)) END"
        )

    items = [item(i, f"{cond} AND length(trim({v})) > 0", f"trim({v})") for i, (cond, v) in enumerate(specs)]
    labelled = f"conversion_type IN ({_in(cfg.label_conversion_types)})"
    items += [
        item(ACTIVE, f"{conv} AND {since('lo_conv')} AND _name IS NOT NULL", "_name", "advertiser_id"),
        item(
            LABEL,
            f"{conv} AND ts >= {b('cut')} AND ts < {b('label_end')} AND {labelled} AND _name IS NOT NULL "
            "AND _spends IS NOT NULL",
            "_name",
            "advertiser_id",
            "conversion_type",
        ),
        item(SERVED, f"{conv} AND {since('lo_serve')}"),
        item(N_ATTR, f"event_type = 'attributed_conversion' AND {since('lo_conv')}"),
        item(N_MATCHED, f"event_type = 'matched_conversion' AND {since('lo_conv')}"),
        item(LAST, past),
    ]
    exploded = ev.selectExpr(*a.keys, "ts", f"explode(array({', '.join(items)})) AS _it")
    return exploded.where("_it IS NOT NULL").select(*a.keys, "ts", "_it.*")


def _merged(arr: str, order: tuple[str, ...]) -> str:
    """SQL: the entries of ``arr`` (structs of ``order``'s fields ts, v, k, n; one per exact spelling)
    merged by k = lower-case value, keeping the newest spelling and its ts and summing n.

    Higher-order functions run interpreted, so only lists holding two spellings of one value take them."""
    by_key = f"sort_array(transform({arr}, e -> named_struct('k', e.k, 'ts', e.ts, 'v', e.v, 'n', e.n)))"
    empty = "CAST(array() AS ARRAY<STRUCT<k: STRING, ts: TIMESTAMP, v: STRING, n: BIGINT>>)"
    last = "try_element_at(acc, -1)"
    fold = (
        f"aggregate({by_key}, {empty}, (acc, e) -> CASE WHEN {last}.k = e.k THEN "
        f"concat(slice(acc, 1, size(acc) - 1), array(named_struct('k', e.k, 'ts', e.ts, 'v', e.v, "
        f"'n', {last}.n + e.n))) ELSE concat(acc, array(e)) END)"
    )  # sorted by k, then oldest first: the last entry of a k is its newest spelling
    shaped = "named_struct(" + ", ".join(f"'{x}', e.{x}" for x in order) + ")"
    return f"CASE WHEN size(array_distinct({arr}.k)) = size({arr}) THEN {arr} ELSE transform({fold}, e -> {shaped}) END"


def _per_user(items: DataFrame, cfg: CompileConfig, keys: list[str]) -> DataFrame:
    """(anchor, user) rows: every list, the active advertisers, the label, the served flag and the counts."""
    dedup = items.groupBy(*keys, "f", "t", "id", "c").agg(
        F.max("ts").alias("tmax"), F.min("ts").alias("tmin"), F.count(F.lit(1)).alias("n")
    )
    parts = {"ts": "tmax", "v": f"substring(t, 1, {cfg.max_chars})", "k": "lower(t)", "n": "n"}

    def entry(order: tuple[str, ...]) -> str:
        return "named_struct(" + ", ".join(f"'{x}', {parts[x]}" for x in order) + ")"

    aggs = [
        f"collect_list(CASE WHEN f = {i} THEN {entry(_RECENT_ENTRY)} END) AS {n}"
        for i, n in enumerate(RECENT)
    ]
    aggs += [
        f"collect_list(CASE WHEN f = {len(RECENT) + i} THEN {entry(_TOP_ENTRY)} END) AS {n}"
        for i, n in enumerate(TOP)
    ]
    aggs += [
        f"collect_list(CASE WHEN f = {ACTIVE} THEN named_struct('ts', tmax, 'id', id, 'v', t) END) AS _a",
        f"array_min(collect_list(CASE WHEN f = {LABEL} THEN named_struct('ts', tmin, 'id', id, 'name', t, 'ct', c) "
        "END)) AS _l",
        f"max(f = {SERVED}) AS _served",
        f"sum(CASE WHEN f = {N_ATTR} THEN n END) AS n_attributed",
        f"sum(CASE WHEN f = {N_MATCHED} THEN n END) AS n_matched",
        f"max(CASE WHEN f = {LAST} THEN tmax END) AS last_event_ts",
    ]
    per = dedup.groupBy(*keys).agg(*[F.expr(s) for s in aggs]).where("_served")
    tops = {"top_categories": cfg.top_k_categories, "top_brands": cfg.top_k_brands}
    active = f"slice(sort_array(_a, false), 1, {cfg.max_items})"
    return per.selectExpr(
        *keys,
        *[
            f"slice(sort_array({_merged(n, _RECENT_ENTRY)}, false), 1, {cfg.max_items}).v AS {n}"
            for n in RECENT
        ],
        *[f"slice(sort_array({_merged(n, _TOP_ENTRY)}, false), 1, {tops[n]}).v AS {n}" for n in TOP],
        f"{active}.v AS active_advertisers",
        f"{active}.id AS active_advertiser_ids",
        "_l.id AS label_advertiser_id",
        "_l.name AS label_advertiser_name",
        "_l.ts AS label_ts",
        "_l.ct AS label_conversion_type",
        "CAST(coalesce(n_attributed, 0) AS BIGINT) AS n_attributed",
        "CAST(coalesce(n_matched, 0) AS BIGINT) AS n_matched",
        "last_event_ts",
    )


def split_sql(salt: str, eval_fraction: float) -> str:
    """SQL: 'train' | 'eval' from a salted hash of user_id; stable across dates and runs."""
    return (
        f"CASE WHEN pmod(xxhash64({sql_str(salt)}, user_id), 10000) < {round(eval_fraction * 10000)} "
        "THEN 'eval' ELSE 'train' END"
    )


def split_expr(salt: str, eval_fraction: float) -> Column:
    """:func:`split_sql` as a Column."""
    return F.expr(split_sql(salt, eval_fraction))


def read_tables(spark: SparkSession, cfg: CompileConfig) -> dict[str, DataFrame]:
    """The four raw tables compile reads, each read (listed, held to the contract) once."""
    layout = RawLayout(Path(cfg.data))
    return {n: read_raw(spark, layout, n) for n in ("events", "advertisers", "advertiser_daily", "users")}


def examples_frame(raw: dict[str, DataFrame], cfg: CompileConfig, anchors: list[date]) -> DataFrame:
    """The examples of every anchor date in ``anchors`` (EXAMPLE_SCHEMA columns, anchor_date included)."""
    a = Anchors(cfg, anchors)
    active = raw["advertisers"].where("is_active").groupBy("advertiser_id").agg(F.expr("min(name) AS _name"))
    label_days = " OR ".join(f"(CAST(dt AS DATE) BETWEEN {_date(w.x)} AND {_date(w.hi_dt)})" for w in a.wins)
    spends = (
        raw["advertiser_daily"]
        .where(f"({label_days}) AND spend > 0")
        .selectExpr("CAST(dt AS DATE) AS _day", "advertiser_id AS _adv")
        .distinct()
        .selectExpr("*", "true AS _spends")
    )
    path = RawLayout(Path(cfg.data)).table("events")
    ev = (
        _events(raw, cfg, a, path)
        .join(F.broadcast(active), "advertiser_id", "left")
        .join(F.broadcast(spends), F.expr("to_date(ts) = _day AND advertiser_id = _adv"), "left")
    )
    per = _per_user(_items(ev, cfg, a), cfg, a.keys)
    users = raw["users"]
    if cfg.countries:
        users = users.where(f"country IN ({_in(list(cfg.countries))})")
    ex = per.join(users.select("user_id", "gender", "age", "user_state", "country"), "user_id", "inner")
    derived = {
        "anchor_date": a.pick([_date(w.x) for w in a.wins]),
        "split": split_sql(cfg.split_salt, cfg.eval_fraction),
        "in_v0": f"n_attributed >= {cfg.v0_min} AND n_matched >= {cfg.v0_min}",
        "age": "CAST(age AS INT)",
    }
    return ex.selectExpr(*[f"{derived[c]} AS {c}" if c in derived else c for c in EXAMPLE_SCHEMA.names])


def pool_frame(raw: dict[str, DataFrame], cfg: CompileConfig, anchors: list[date]) -> DataFrame:
    """The preset pool of every anchor date: the top ``preset_pool_size`` active advertisers by revenue
    that day with spend > 0 (anchor_date, rank, advertiser_id, name, revenue)."""
    days = ", ".join(_date(x) for x in anchors)
    daily = raw["advertiser_daily"].where(f"CAST(dt AS DATE) IN ({days}) AND spend > 0")
    names = raw["advertisers"].where("is_active").select("advertiser_id", "name")
    rank = "row_number() OVER (PARTITION BY anchor_date ORDER BY revenue DESC, advertiser_id)"
    return (
        daily.selectExpr("CAST(dt AS DATE) AS anchor_date", "advertiser_id", "revenue")
        .join(names, "advertiser_id")
        .selectExpr("anchor_date", f"{rank} AS rank", "advertiser_id", "name", "revenue")
        .where(f"rank <= {cfg.preset_pool_size}")
        .selectExpr("anchor_date", "CAST(rank AS INT) AS rank", "advertiser_id", "name", "revenue")
    )
