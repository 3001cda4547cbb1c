"""Train the ctcvr / vtcvr GBDT models without predictions, with the heuristic control's and with the LLM's
features, and evaluate them (Table 5).

``train`` builds the training set through Feast (:mod:`ranking.dataset`), fits one model per
(task, library, feature set of ``ranking.config.SERVICES``) with early stopping on the validation split,
saves each model with its feature spec under ``<out>/models/<task>/<library>/<set>/`` and the test-split
probabilities in ``<out>/predictions.parquet``; ``evaluate`` turns those into the Table 5 report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from rich.progress import Progress

from ranking.config import PREDICTORS, SERVICES, RankingConfig
from ranking.dataset import build_dataset, load_dataset, service_features
from ranking.evaluate import compare, write_report
from ranking.models import FeatureSpec, SavedModel, best_iteration, fit_model, gain_importance

log = logging.getLogger(__name__)


def model_dir(out: Path, task: str, library: str, feature_set: str) -> Path:
    """Folder of one trained model."""
    return Path(out) / "models" / task / library / feature_set


def train(cfg: RankingConfig, reuse_dataset: bool = False) -> dict[str, Any]:
    """Build the Feast training set and train every (task, library, feature set) model.

    Args:
        cfg: data, store, windows, splits and boosting settings (see :class:`RankingConfig`).
        reuse_dataset: read ``<out>/dataset`` from an earlier run instead of labelling and joining again.

    Returns:
        ``{"rounds": {"task/lib": {set: n}}, "importance": {"task/lib": {column: gain share}},
        "seconds": {...}}``, also written to ``<out>/train.json``.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out)
    frames = load_dataset(out) if reuse_dataset else build_dataset(cfg)
    t_data = time.perf_counter() - t0
    base = frames["baseline"]
    for name, frame in frames.items():
        if not frame["impression_id"].equals(base["impression_id"]):
            raise RuntimeError(f"feature set {name!r}: rows differ from the baseline set")
    split = base["split"].to_numpy()
    preds = base[
        ["impression_id", "user_id", "advertiser_id", "event_timestamp", "split", "clicked", *cfg.tasks]
    ].copy()
    rounds: dict[str, dict[str, int]] = {}
    importance: dict[str, dict[str, dict[str, float]]] = {p: {} for p in PREDICTORS}
    fit_seconds: dict[str, float] = {}
    jobs = [(t, lib, s) for t in cfg.tasks for lib in cfg.libraries for s in SERVICES]
    specs = {}
    for s, service in SERVICES.items():
        feats = service_features(cfg, service)
        specs[s] = FeatureSpec.fit(frames[s].loc[split == "train"], feats)
    with Progress() as progress:
        bar = progress.add_task("training ranking models", total=len(jobs))
        for task, lib, s in jobs:
            frame, spec = frames[s], specs[s]
            now = frame["event_timestamp"]
            xs = {k: spec.matrix(frame.loc[split == k], now[split == k]) for k in ("train", "valid")}
            ys = {k: frame.loc[split == k, task].to_numpy() for k in ("train", "valid")}
            if ys["train"].sum() == 0 or ys["valid"].sum() == 0:
                raise ValueError(
                    f"task {task!r}: no positive labels in the train or valid split; "
                    "widen the impression window or add users"
                )
            t = time.perf_counter()
            model = fit_model(lib, xs["train"], ys["train"], xs["valid"], ys["valid"], cfg)
            key = f"{task}/{lib}"
            fit_seconds[f"{key}/{s}"] = round(time.perf_counter() - t, 2)
            saved = SavedModel(lib, spec, model, best_iteration(lib, model))
            saved.save(model_dir(out, task, lib, s))
            rounds.setdefault(key, {})[s] = saved.best_iteration
            test = split == "test"
            preds.loc[test, f"p_{task}_{lib}_{s}"] = saved.predict(frame.loc[test], now[test])
            if s in PREDICTORS:
                importance[s][key] = gain_importance(lib, model, spec.columns())
            log.info(
                "%s %s %s: %d rounds in %.1f s", task, lib, s, saved.best_iteration, fit_seconds[f"{key}/{s}"]
            )
            progress.advance(bar)
    preds.loc[split == "test"].to_parquet(out / "predictions.parquet", index=False)
    result = {
        "rounds": rounds,
        "importance": importance["llm"],
        "importance_heuristic": importance["heuristic"],
        "seconds": {
            "dataset": round(t_data, 2),
            "fit": fit_seconds,
            "total": round(time.perf_counter() - t0, 2),
        },
        "features": {s: spec.columns() for s, spec in specs.items()},
    }
    (out / "train.json").write_text(json.dumps(result, indent=2))
    return result


def evaluate(cfg: RankingConfig, command: str = "") -> dict[str, Any]:
    """Table 5 from the saved test predictions: metrics, bootstrap deltas (each predictor's features over the
    baseline, the LLM's over the heuristic control's), importance, report.

    Args:
        cfg: where the run lives (``out``) and the bootstrap settings.
        command: the command line recorded in the report header.

    Returns:
        The results dict, also written to ``<out>/metrics.json``; the report is ``<out>/report.md``.
    """
    out = Path(cfg.out)
    if not (out / "predictions.parquet").exists():
        raise FileNotFoundError(f"no test predictions under {out}; run `adprior ranking train` first")
    preds = pd.read_parquet(out / "predictions.parquet")
    meta = json.loads((out / "train.json").read_text())
    comparisons: dict[str, Any] = {}
    controls: dict[str, dict[str, Any]] = {}
    for task in cfg.tasks:
        for lib in cfg.libraries:
            key = f"{task}/{lib}"

            def pair(a: str, b: str, task: str = task, lib: str = lib) -> dict[str, Any]:
                return compare(
                    preds[task].to_numpy(),
                    preds[f"p_{task}_{lib}_{a}"].to_numpy(),
                    preds[f"p_{task}_{lib}_{b}"].to_numpy(),
                    preds["user_id"].to_numpy(),
                    cfg.bootstrap_resamples,
                    cfg.confidence,
                    cfg.seed,
                    names=(a, b),
                )

            comparisons[key] = pair("baseline", "llm")
            if f"p_{task}_{lib}_heuristic" in preds:  # runs trained before the heuristic control lack it
                controls[key] = {
                    "heuristic": pair("baseline", "heuristic"),
                    "llm_vs_heuristic": pair("heuristic", "llm"),
                }
    results = {
        "command": command,
        "config": {k: v for k, v in asdict(cfg).items() if k != "spark"},
        "dataset": json.loads((out / "dataset" / "summary.json").read_text()),
        "comparisons": comparisons,  # LLM features over the baseline (the paper's Table 5)
        "controls": controls,  # + heuristic-list features over the baseline; LLM over heuristic (paired)
        "rounds": meta["rounds"],
        "importance": meta["importance"],
        "importance_heuristic": meta.get("importance_heuristic", {}),
    }
    (out / "metrics.json").write_text(json.dumps(results, indent=2, default=str))
    write_report(results, cfg, command, out)
    return results
