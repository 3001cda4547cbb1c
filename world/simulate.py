"""A simulated ads world with known ground truth: every raw table of the input contract.

The generative story, per user (each user draws from its own RNG seeded by ``(seed, user_id)``,
so users are generated independently, in chunks, in parallel, and the same seed gives the same
world):

* Interests: 1-4 top-level categories with Dirichlet weights; with probability ``drift_prob`` a new
  category enters at a random *drift day* and the old weights fade (interest drift).
* Affinity: for each interest category a consideration set of advertisers (popularity-weighted),
  plus their *brand-group siblings* at reduced weight. Affinity is the truth of who a user likes.
* High-priority conversions follow a daily Poisson process with rate ``rate(state)``; each one picks
  an advertiser from ``(1-eps) * affinity * (1 + habit) + eps * popularity`` where *habit* grows
  with every conversion with that advertiser and decays with half-life ``habit_half_life`` days
  (repeat conversions, recency). The ``eps`` part is label noise.
* Foreshadowing: before a conversion the user may visit the advertiser's URLs (brand extracted),
  search off-site for the brand, or search on-site for the product (category only). Users with
  *weak on-site signal* rarely search on-site. Browsing episodes that end without a conversion,
  low-priority conversions (add_to_cart, page_visit ...) with random advertisers, and background
  on-site searches are the noise.
* Ads: impressions of items (targeted or popular), clicks with dwell time; click-through
  (``ad_conversion``) and view-through (``view_conversion``) conversions come from the same process.

Ground truth, written beside the data root in ``<root>_truth/`` (no model stage reads it):
``user_params``, ``affinity`` (per phase), ``popularity``, and ``propensity``: each user's
probability of a high-priority conversion with each advertiser on each of the last
``truth_days`` days (top ``truth_top_k`` advertisers per user-day).

The advertiser side is built by :mod:`world.advertisers`, each user's behaviour by :mod:`world.users`;
this module holds the knobs (:class:`WorldConfig`) and writes the tables, chunk by chunk.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from tqdm import tqdm

from world.advertisers import advertiser_daily, build_catalog
from world.config import WorldConfig
from world.schema import SCHEMAS, RawLayout, conform
from world.users import EventSink, LatentUser, simulate_user, truth_rows

log = logging.getLogger(__name__)


def _write_partitioned(table: pa.Table, folder: Path, tag: str) -> None:
    pads.write_dataset(
        table,
        folder,
        format="parquet",
        partitioning=pads.partitioning(pa.schema([("dt", pa.string())]), flavor="hive"),
        basename_template=f"part-{tag}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )


def _run_chunk(args: tuple[WorldConfig, int, int]) -> dict[str, int]:
    cfg, lo, hi = args
    cat, _ = build_catalog(cfg)
    layout = RawLayout(Path(cfg.out))
    start = cfg.end_date - timedelta(days=cfg.days - 1)
    start_ts = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    sink = EventSink()
    users: dict[str, list] = {f: [] for f in SCHEMAS["users"].names}
    params: dict[str, list] = {
        k: [] for k in ("user_id", "state", "rate", "weak_onsite", "drift_day", "first_day")
    }
    aff_rows: dict[str, list] = {"user_id": [], "phase": [], "advertiser_id": [], "weight": []}
    truth: dict[str, list] = {"user_id": [], "dt": [], "advertiser_id": [], "propensity": []}
    for uid in range(lo, hi):
        u = LatentUser(uid, cfg, cat, start_ts)
        simulate_user(u, cfg, cat, start_ts, sink)
        for k, v in zip(users, (uid, u.age, u.gender, u.state, u.country, u.signup), strict=True):
            users[k].append(v)
        for k, v in zip(params, (uid, u.state, u.rate, u.weak, u.drift_day, u.first_day), strict=True):
            params[k].append(v)
        for phase, aff in ((0, u.aff0), (1, u.aff1)):
            for a, w in aff.items():
                aff_rows["user_id"].append(uid)
                aff_rows["phase"].append(phase)
                aff_rows["advertiser_id"].append(int(cat.adv["id"][a]))
                aff_rows["weight"].append(w)
        for k, v in truth_rows(u, cfg, cat, start).items():
            truth[k].extend(v)
    tag = f"{lo:09d}"
    ev = sink.cols
    ts = pa.array([int(t * 1e6) for t in ev["ts"]], pa.timestamp("us", tz="UTC"))
    events = conform(pa.table({**{k: v for k, v in ev.items() if k != "ts"}, "ts": ts}), "events")
    # Keep events inside the simulated window: foreshadowing may reach before the start, a click
    # after an impression late on the last day may spill past the end.
    lo = pa.scalar(int(start_ts * 1e6), pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(int((start_ts + cfg.days * 86400) * 1e6), pa.timestamp("us", tz="UTC"))
    events = events.filter(pc.and_(pc.greater_equal(events["ts"], lo), pc.less(events["ts"], hi)))
    events = events.append_column("dt", pc.strftime(events.column("ts"), format="%Y-%m-%d"))
    _write_partitioned(events, layout.table("events"), tag)
    pq.write_table(conform(pa.table(users), "users"), layout.table("users") / f"part-{tag}.parquet")
    tr = layout.truth
    pq.write_table(pa.table(params), tr / "user_params" / f"part-{tag}.parquet")
    pq.write_table(pa.table(aff_rows), tr / "affinity" / f"part-{tag}.parquet")
    pq.write_table(pa.table(truth), tr / "propensity" / f"part-{tag}.parquet")
    return {"users": hi - lo, "events": len(events)}


def _chunks(cfg: WorldConfig) -> Iterator[tuple[WorldConfig, int, int]]:
    for lo in range(0, cfg.users, cfg.chunk_users):
        yield cfg, lo, min(cfg.users, lo + cfg.chunk_users)


def simulate(cfg: WorldConfig) -> dict:
    """Generate the world under ``cfg.out`` (raw tables) and ``<out>_truth`` (ground truth).

    Args:
        cfg: sizes, seed and behaviour knobs; see ``WorldConfig``.

    Returns:
        A summary: counts per table, events per type, seconds taken.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out)
    layout = RawLayout(out)
    for p in (out, layout.truth):
        if p.exists():
            shutil.rmtree(p)
    for name in ("users", "advertisers", "items"):
        layout.table(name).mkdir(parents=True)
    for name in ("user_params", "affinity", "propensity"):
        (layout.truth / name).mkdir(parents=True)
    cat, tables = build_catalog(cfg)
    pq.write_table(tables["advertisers"], layout.table("advertisers") / "part-0.parquet")
    pq.write_table(tables["items"], layout.table("items") / "part-0.parquet")
    daily = advertiser_daily(cfg, cat)
    daily_out = conform(daily, "advertiser_daily").append_column(
        "dt", pa.array([d.isoformat() for d in daily.column("dt").to_pylist()])
    )
    _write_partitioned(daily_out, layout.table("advertiser_daily"), "0")
    pq.write_table(
        pa.table({"advertiser_id": cat.adv["id"], "popularity": cat.pop}), layout.truth / "popularity.parquet"
    )
    n_events = 0
    chunks = list(_chunks(cfg))
    bar = tqdm(total=cfg.users, desc="simulate users", unit="user", disable=None)
    if cfg.workers > 1:
        # 'spawn': never fork a process that may hold a JVM (Spark) or other threads.
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for res in pool.map(_run_chunk, chunks):
                n_events += res["events"]
                bar.update(res["users"])
    else:
        for ch in chunks:
            res = _run_chunk(ch)
            n_events += res["events"]
            bar.update(res["users"])
    bar.close()
    summary = {
        "users": cfg.users,
        "advertisers": len(cat.names),
        "items": tables["items"].num_rows,
        "events": n_events,
        "days": cfg.days,
        "start_date": (cfg.end_date - timedelta(days=cfg.days - 1)).isoformat(),
        "end_date": cfg.end_date.isoformat(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    cfg_dict = {k: (str(v) if isinstance(v, Path | date) else v) for k, v in asdict(cfg).items()}
    (layout.truth / "world.json").write_text(json.dumps({"config": cfg_dict, "summary": summary}, indent=2))
    log.info("simulated world: %s", summary)
    return summary
