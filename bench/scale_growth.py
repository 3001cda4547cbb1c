"""Growth between sizes and extrapolation of the nightly scale benchmark (bench/scale.py).

:func:`growth` compares consecutive measured sizes stage by stage (time ratio / size ratio, the
exponent b of t ~ N^b, memory ratio); :func:`extrapolate` estimates larger sizes from the last two
complete ones with a fixed + per-user model (an estimate, labelled as such in the report).
"""

from __future__ import annotations

import itertools
import math

from bench.scale_stages import STAGES


def growth(results: list[dict]) -> list[dict]:
    """Per stage, between consecutive sizes: size ratio, time ratio, exponent b (t ~ N^b), memory ratio."""
    rows = []
    for a, b in itertools.pairwise(results):
        sa, sb = {r["stage"]: r for r in a["stages"]}, {r["stage"]: r for r in b["stages"]}
        size_ratio = b["users"] / a["users"]
        for name in sa:  # the pipeline's stages, then any materialize variants
            if name not in sb:
                continue
            ta, tb = sa[name]["seconds"], sb[name]["seconds"]
            ia, ib = sa[name]["inner_s"], sb[name]["inner_s"]
            ma, mb = sa[name]["peak_tree_rss_mib"], sb[name]["peak_tree_rss_mib"]
            rows.append(
                {
                    "from_users": a["users"],
                    "to_users": b["users"],
                    "stage": name,
                    "size_ratio": round(size_ratio, 2),
                    "time_ratio": round(tb / ta, 2) if ta else None,
                    "time_ratio_per_size_ratio": round(tb / ta / size_ratio, 3) if ta else None,
                    "exponent": round(math.log(tb / ta) / math.log(size_ratio), 2)
                    if ta and tb and size_ratio != 1
                    else None,
                    "inner_time_ratio": round(ib / ia, 2) if ia else None,
                    "inner_exponent": (
                        round(math.log(ib / ia) / math.log(size_ratio), 2)
                        if ia > 0 and ib > 0 and size_ratio != 1
                        else None
                    ),
                    "mem_ratio": round(mb / ma, 2) if ma else None,
                }
            )
    return rows


def extrapolate(results: list[dict], sizes: list[int]) -> list[dict]:
    """Estimate per stage from the last two complete sizes N1 < N2 with a fixed + per-user model.

    t(N) = a + c * N through the two points (c = per-user cost, clamped >= 0; a = fixed cost: start-up,
    model load, Spark start), the same for peak tree RSS. A power law through two small sizes would
    carry their fixed costs into the exponent and grossly underestimate large N; the affine model
    assumes every stage is at most linear in users beyond N2 (super-linear stages, e.g. a shuffle that
    spills, or memory that a chunked stage bounds, show only in a real measurement).
    """
    done = [r for r in results if r["failed"] is None and set(STAGES) <= {s["stage"] for s in r["stages"]}]
    if len(done) < 2:
        return []
    a, b = done[-2], done[-1]
    sa, sb = {r["stage"]: r for r in a["stages"]}, {r["stage"]: r for r in b["stages"]}
    dn = b["users"] - a["users"]

    def affine(key: str, name: str, n: int) -> tuple[float, float, float]:
        y1, y2 = sa[name][key], sb[name][key]
        c = max(0.0, (y2 - y1) / dn)
        return y2 + c * (n - b["users"]), y2 - c * b["users"], c

    rows = []
    for n in sizes:
        if n <= b["users"]:
            continue
        total_s, peak_mem = 0.0, 0.0
        for name in [*STAGES, *(x for x in sa if x not in STAGES and x in sb)]:
            s, fixed_s, c_s = affine("seconds", name, n)
            m, _, c_m = affine("peak_tree_rss_mib", name, n)
            if name in STAGES:  # the total is the nightly pipeline's; variants are alternatives to a stage
                total_s += s
                peak_mem = max(peak_mem, m)
            rows.append(
                {
                    "users": n,
                    "stage": name,
                    "fixed_s": round(fixed_s, 1),
                    "ms_per_user": round(c_s * 1e3, 3),
                    "est_seconds": round(s, 1),
                    "est_minutes": round(s / 60, 1),
                    "kib_per_user": round(c_m * 1024, 3),
                    "est_peak_tree_rss_mib": round(m, 0),
                }
            )
        rows.append(
            {
                "users": n,
                "stage": "total",
                "est_seconds": round(total_s, 1),
                "est_minutes": round(total_s / 60, 1),
                "est_peak_tree_rss_mib": round(peak_mem, 0),
            }
        )
    return rows
