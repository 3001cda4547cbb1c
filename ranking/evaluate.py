"""Paper Table 5: ΔLoss, ΔAUC, ΔPR-AUC of the LLM-feature model over the baseline, with intervals, beside
the heuristic control (issue 18): three rows per task and library, baseline / + heuristic-list features /
+ LLM features, and the paired LLM-over-heuristic delta, which is the LLM's own value.

Deltas are relative, as in the paper: ``(metric_b - metric_a) / metric_a`` in % (a = the reference).
Intervals are user-level bootstrap percentile intervals (``scipy.stats.bootstrap`` over users; each
resample takes all test impressions of the drawn users, both models scored on the same rows), since
impressions of one user are not independent. :func:`delta_cell` is the one format of a Table 5 cell.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import bootstrap
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from ranking.config import RankingConfig

log = logging.getLogger(__name__)

METRICS = ("loss", "auc", "pr_auc")


def metrics(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[log loss, ROC AUC, PR AUC (average precision)]; AUCs are NaN when only one class is present."""
    y = np.asarray(y)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    loss = log_loss(y, p, labels=[0, 1])
    if y.min() == y.max():
        return np.array([loss, np.nan, np.nan])
    return np.array([loss, roc_auc_score(y, p), average_precision_score(y, p)])


def pct_change(ref: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Relative change in % of ``new`` over ``ref``, element-wise (the paper's Table 5 deltas)."""
    return (new - ref) / ref * 100.0


def relative_deltas(y: np.ndarray, p_base: np.ndarray, p_llm: np.ndarray) -> np.ndarray:
    """Relative change in % of [loss, AUC, PR-AUC], the second model (LLM) over the first (baseline)."""
    return pct_change(metrics(y, p_base), metrics(y, p_llm))


def weighted_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`metrics` of many weighted copies of the same rows at once, without sorting per copy.

    A user bootstrap resample is the test rows each repeated as often as its user was drawn, so its
    metrics are the rows' metrics under integer weights. Row ``b`` of ``w`` gives copy ``b``'s weights.
    Equal to :func:`metrics` on the expanded rows (ties grouped as scikit-learn groups them: half credit
    in AUC, one precision step per distinct score in average precision).

    Args:
        y: 0/1 labels, shape ``(n,)``.
        p: probabilities, shape ``(n,)``.
        w: non-negative weights, shape ``(b, n)``.

    Returns:
        ``(3, b)``: log loss, ROC AUC, PR AUC per copy; AUCs are NaN where a copy has one class only.
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    w = np.asarray(w, dtype=float)
    total = w.sum(axis=1)
    row_loss = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    loss = (w @ row_loss) / total
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # one group per distinct score, descending
    ws = w[:, order]
    pos = np.add.reduceat(ws * y[order], starts, axis=1)  # (b, groups) positive weight per score
    neg = np.add.reduceat(ws * (1 - y[order]), starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((tp - pos / 2) * neg).sum(axis=1) / (n_pos * n_neg)
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    one_class = (n_pos == 0) | (n_neg == 0)
    auc[one_class], ap[one_class] = np.nan, np.nan
    return np.stack([loss, auc, ap])


def compare(
    y: np.ndarray,
    p_base: np.ndarray,
    p_llm: np.ndarray,
    users: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
    names: tuple[str, str] = ("baseline", "llm"),
    batch: int = 100,
) -> dict[str, Any]:
    """Metrics of both models and relative deltas with user-bootstrap intervals.

    The bootstrap is ``scipy.stats.bootstrap`` over users, vectorised: each batch of resampled users
    becomes row weights and :func:`weighted_metrics` scores all of them at once.

    Args:
        y: 0/1 labels of the test impressions.
        p_base, p_llm: the two models' probabilities on the same rows (reference first).
        users: user id of each row (the resampling unit).
        resamples: bootstrap resamples.
        confidence: interval level (0.95).
        seed: bootstrap seed.
        names: the keys of the two models' metrics in the result (e.g. ``("heuristic", "llm")``).
        batch: resamples scored per vectorised call (memory: ~5 x batch x rows floats).

    Returns:
        ``{"n", "positives", "users", "baseline": {metric: v}, "llm": {...}, "delta_pct": {metric: v},
        "ci_pct": {metric: [lo, hi]}, "p_improve": {metric: share of resamples where the second model is
        better}}`` (``baseline`` / ``llm`` named by ``names``).
    """
    y, p_base, p_llm = np.asarray(y), np.asarray(p_base), np.asarray(p_llm)
    codes, uniq = pd.factorize(pd.Series(users))
    n_users = len(uniq)

    def stat(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        drawn = np.atleast_2d(sample)  # (b, users): the user codes drawn in each resample
        b = len(drawn)
        counts = np.bincount((drawn + n_users * np.arange(b)[:, None]).ravel(), minlength=b * n_users)
        w = counts.reshape(b, n_users)[:, codes]  # each row weighted by its user's draw count
        out = pct_change(weighted_metrics(y, p_base, w), weighted_metrics(y, p_llm, w))
        return out[:, 0] if np.ndim(sample) == 1 else out

    point = relative_deltas(y, p_base, p_llm)
    res = bootstrap(
        (np.arange(n_users),),
        stat,
        vectorized=True,
        batch=batch,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=seed,
    )
    dist = np.asarray(res.bootstrap_distribution)  # (3, resamples)
    better = np.array([dist[0] < 0, dist[1] > 0, dist[2] > 0])
    valid = ~np.isnan(dist)
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "users": n_users,
        names[0]: dict(zip(METRICS, map(float, metrics(y, p_base)), strict=True)),
        names[1]: dict(zip(METRICS, map(float, metrics(y, p_llm)), strict=True)),
        "delta_pct": dict(zip(METRICS, map(float, point), strict=True)),
        "ci_pct": {
            m: [
                float(np.nanquantile(dist[i], (1 - confidence) / 2)),
                float(np.nanquantile(dist[i], 1 - (1 - confidence) / 2)),
            ]
            for i, m in enumerate(METRICS)
        },
        "p_improve": {
            m: float(better[i][valid[i]].mean()) if valid[i].any() else float("nan")
            for i, m in enumerate(METRICS)
        },
    }


def delta_cell(d: float | None, ci: list[float]) -> str:
    """A Table 5 cell: the relative change in % with its interval, ``+1.23% [-0.40, +2.90]``."""
    if d is None or np.isnan(d):
        return "n/a"
    return f"{d:+.2f}% [{ci[0]:+.2f}, {ci[1]:+.2f}]"


# Table 5's rows beside the baseline: (results key, what the row adds, its reference) -> comparisons.
ROWS = (
    ("heuristic", "+ heuristic-list features", "baseline"),
    ("llm", "+ LLM features", "baseline"),
    ("llm_vs_heuristic", "LLM over heuristic (paired)", "heuristic"),
)


def table5_rows(results: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(task/library, row label, reference, comparison) of every Table 5 row in ``results`` (a run
    without the heuristic control has only the LLM rows)."""
    out = []
    for key, r in results["comparisons"].items():
        controls = (results.get("controls") or {}).get(key, {})
        for name, label, ref in ROWS:
            c = r if name == "llm" else controls.get(name)
            if c is not None:
                out.append((key, label, ref, c))
    return out


def table5_lines(results: dict[str, Any], p_better: bool = False) -> list[str]:
    """The Table 5 markdown table (header + one line per :func:`table5_rows` row); ``p_better`` adds the
    bootstrap share of resamples in which the row improves each metric. The one renderer of Table 5
    (``report.md`` here, ``reports/all``)."""
    head = "| task | library | row | reference | Δ Loss [95 % CI] | Δ AUC | Δ PR-AUC |"
    lines = [
        head + (" P(better): loss / AUC / PR-AUC |" if p_better else ""),
        "|---" * (8 if p_better else 7) + "|",
    ]
    for key, label, ref, r in table5_rows(results):
        task, lib = key.split("/")
        d, ci = r["delta_pct"], r["ci_pct"]
        line = (
            f"| {task} | {lib} | {label} | {ref} | "
            + " | ".join(delta_cell(d[m], ci[m]) for m in METRICS)
            + " |"
        )
        if p_better:
            pi = r["p_improve"]
            line += f" {pi['loss']:.2f} / {pi['auc']:.2f} / {pi['pr_auc']:.2f} |"
        lines.append(line)
    return lines


def write_report(results: dict[str, Any], cfg: RankingConfig, command: str, out: Path) -> Path:
    """``report.md`` + ``table5.png`` (forest plot of every Table 5 row) from :func:`ranking.train.evaluate`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = results["dataset"]
    lines = [
        "# Ranking with LLM features beside the heuristic control (paper Table 5 analogue)",
        "",
        f"Command: `{command}`",
        "",
        "Config: `" + json.dumps(results["config"], default=str) + "`",
        "",
        f"Impressions {ds['impressions']:,} from {ds['users']} users, {ds['start'][:10]} to {ds['end'][:10]}; "
        f"share with an LLM prediction in force: {ds.get('llm_has_prediction') or 0:.3f}"
        + (
            f", with a heuristic-control list: {ds['heuristic_has_prediction']:.3f}."
            if ds.get("heuristic_has_prediction") is not None
            else "."
        ),
        "",
        "| split | rows | users | clicked | ctcvr positives | vtcvr positives |",
        "|---|---|---|---|---|---|",
    ]
    for s, v in ds["splits"].items():
        lines.append(f"| {s} | {v['rows']:,} | {v['users']} | {v['clicked']} | {v['ctcvr']} | {v['vtcvr']} |")
    lines += [
        "",
        "## Table 5: relative change over the baseline (test split), and the LLM over the heuristic control",
        "",
        f"Relative change in %, with user-bootstrap {cfg.confidence:.0%} intervals ({cfg.bootstrap_resamples} "
        "resamples), every model scored on the same impressions. Loss: lower is better; AUC and PR-AUC: higher "
        "is better. '+ heuristic-list features': the same candidate features over the heuristic control's list "
        "(history + brands + co-occurrence + popularity, top 20); 'LLM over heuristic': the LLM-feature model "
        "against the heuristic-feature model, the LLM's own value. Paper (ctcvr / vtcvr, LLM over baseline): "
        "ΔLoss -0.12% / -0.64%, ΔAUC +0.06% / +0.09%, ΔPR-AUC +0.71% / +1.64%.",
        "",
        *table5_lines(results, p_better=True),
    ]
    sets = ["baseline", *(p for p in ("heuristic", "llm") if p == "llm" or results.get("controls"))]
    title = " / ".join({"baseline": "base", "heuristic": "heur.", "llm": "LLM"}[x] for x in sets)
    lines += [
        "",
        "## Absolute test metrics",
        "",
        f"| task | library | rows | positives | loss {title} | AUC {title} | PR-AUC {title} | rounds {title} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results["comparisons"].items():
        task, lib = key.split("/")
        h = (results.get("controls") or {}).get(key, {}).get("heuristic", {}).get("heuristic")
        vals = {"baseline": r["baseline"], "llm": r["llm"], "heuristic": h}
        rounds = results["rounds"][key]

        def cells(m: str, digits: int, vals: dict = vals) -> str:
            return " / ".join("–" if vals[x] is None else f"{vals[x][m]:.{digits}f}" for x in sets)

        lines.append(
            f"| {task} | {lib} | {r['n']:,} | {r['positives']} | {cells('loss', 5)} | {cells('auc', 4)} | "
            f"{cells('pr_auc', 4)} | " + " / ".join(str(rounds.get(x, "–")) for x in sets) + " |"
        )
    for prefix, name, imps in (
        ("llm_", "LLM", results["importance"]),
        ("heuristic_", "heuristic-control", results.get("importance_heuristic") or {}),
    ):
        cols = sorted({c for imp in imps.values() for c in imp if c.startswith(prefix)})
        if not cols:
            continue
        lines += [
            "",
            f"## Importance of the {name} features (share of total gain in the {name}-feature model)",
            "",
            "| task | library | " + " | ".join(cols) + f" | all {name} |",
            "|---|---|" + "---|" * (len(cols) + 1),
        ]
        for key, imp in imps.items():
            task, lib = key.split("/")
            tot = sum(imp.get(c, 0.0) for c in cols)
            lines.append(
                f"| {task} | {lib} | "
                + " | ".join(f"{imp.get(c, 0.0):.3f}" for c in cols)
                + f" | {tot:.3f} |"
            )
    lines += ["", "![Table 5](table5.png)", ""]
    (out / "report.md").write_text("\n".join(lines))

    rows = table5_rows(results)
    labels = [f"{key} {label}" for key, label, _, _ in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(rows) + 1.5), sharey=True)
    for ax, m, title in zip(axes, METRICS, ("Δ Loss % (lower better)", "Δ AUC %", "Δ PR-AUC %"), strict=True):
        for i, (_, label, _, r) in enumerate(rows):
            d, (lo, hi) = r["delta_pct"][m], r["ci_pct"][m]
            if not np.isnan(d):
                color = {"+ heuristic-list features": "tab:orange", "+ LLM features": "tab:blue"}.get(
                    label, "tab:green"
                )
                ax.errorbar(d, i, xerr=[[d - lo], [hi - d]], fmt="o", capsize=3, color=color)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(title)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
    fig.suptitle(
        "Heuristic-list and LLM features vs baseline, LLM vs heuristic (test split, user-bootstrap 95% CI)"
    )
    fig.tight_layout()
    fig.savefig(out / "table5.png", dpi=110)
    plt.close(fig)
    return out / "report.md"
