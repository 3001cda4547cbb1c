"""The one configuration of the ranking stage (paper 3.6.2, 4.4.1, Table 5) and its feature sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from adprior.io import SparkConfig
from adprior.store import StoreConfig

TASKS = ("ctcvr", "vtcvr")
LIBRARIES = ("xgboost", "lightgbm")
# feature set -> Feast feature service: Table 5's three rows (issue 18): no predictions, + the heuristic
# control's candidate features (heuristic_*), + the LLM's (llm_*); the same views over two sources.
SERVICES = {"baseline": "ranking_baseline", "heuristic": "ranking_heuristic", "llm": "ranking_llm"}
PREDICTORS = ("heuristic", "llm")  # the feature sets that add a predictor's features; prefix '<set>_'


@dataclass
class RankingConfig:
    """Training data, models and evaluation of the ctcvr / vtcvr conversion models."""

    data: Path = Path("runs/ranking/world")  # raw-table root (events with impressions, clicks, conversions)
    store: StoreConfig = field(default_factory=lambda: StoreConfig(repo=Path("runs/ranking/feature_repo")))
    out: Path = Path("runs/ranking/models")  # training set, models, metrics, report
    start: date | None = None  # first impression day; None: the first day predictions exist (min event ts)
    end: date | None = None  # impressions before this day; None: last event day + 1 - ctcvr_window_days
    click_window_s: float = 3600.0  # a click on the same item within this many seconds => clicked
    ctcvr_window_days: float = 7.0  # click, then a high-priority conversion with the advertiser within this
    vtcvr_window_days: float = (
        1.0  # no click, then a high-priority conversion with the advertiser within this
    )
    valid_fraction: float = 0.15  # time split: impressions before the last (valid + test) share train
    test_fraction: float = 0.25  # the latest impressions: evaluation only
    tasks: tuple[str, ...] = TASKS  # which labels get models
    libraries: tuple[str, ...] = LIBRARIES  # which GBDT libraries train each task
    n_estimators: int = 1000  # boosting rounds at most (early stopping on the valid split picks fewer)
    learning_rate: float = 0.05  # shrinkage
    max_depth: int = 6  # xgboost tree depth; lightgbm num_leaves = 2**max_depth - 1 (capped at 63)
    min_child_weight: float = 1.0  # xgboost min_child_weight / lightgbm min_sum_hessian_in_leaf
    early_stopping_rounds: int = 50  # rounds without valid log-loss improvement before stopping
    threads: int = 2  # GBDT threads
    seed: int = 0  # GBDT and bootstrap seed
    bootstrap_resamples: int = 1000  # user-level bootstrap resamples for the 95 % intervals
    confidence: float = 0.95  # interval level
    spark: SparkConfig = field(default_factory=SparkConfig)  # where the labelling job runs
