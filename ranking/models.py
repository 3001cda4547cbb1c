"""GBDT conversion models (xgboost, lightgbm) over Feast feature frames, and their model files.

One :class:`FeatureSpec` turns a frame of Feast features (offline from ``get_historical_features``
or online from ``get_online_features``) into the model matrix, so both paths score identically:
strings become pandas categoricals with the levels seen in training (the libraries' own categorical
handling: xgboost ``enable_categorical``, lightgbm pandas categoricals), booleans and integers become
floats, and timestamps become their age in days at the request time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranking.config import RankingConfig

LLM_PREFIX = "llm_"  # LLM-derived features are named llm_*, the heuristic control's heuristic_* (features.py)


@dataclass
class FeatureSpec:
    """How a Feast feature frame becomes a model matrix."""

    features: list[str]  # input feature names, in order (Feast short names)
    categorical: dict[str, list[str]] = field(default_factory=dict)  # string feature -> training levels
    timestamps: list[str] = field(default_factory=list)  # timestamp features, turned into '<name>_age_days'

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: list[str]) -> FeatureSpec:
        """Infer kinds from the training frame: strings are categorical, datetimes are ages."""
        cats: dict[str, list[str]] = {}
        stamps: list[str] = []
        for f in features:
            s = frame[f]
            if pd.api.types.is_datetime64_any_dtype(s):
                stamps.append(f)
            elif pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
                if s.dropna().map(lambda v: isinstance(v, list | np.ndarray)).any():
                    raise ValueError(f"feature {f!r} holds lists; models take scalar features only")
                cats[f] = sorted({str(v) for v in s.dropna()})
        return cls(features=list(features), categorical=cats, timestamps=stamps)

    def columns(self) -> list[str]:
        """Model matrix column names."""
        return [f"{f}_age_days" if f in self.timestamps else f for f in self.features]

    def matrix(self, frame: pd.DataFrame, now: pd.Series | pd.Timestamp) -> pd.DataFrame:
        """The model matrix of ``frame`` as a DataFrame (rows in order), categorical features as pandas
        categoricals of their training levels: what the libraries train on. Values as :meth:`array`.

        Raises:
            KeyError: a feature is missing from ``frame``.
            ValueError: a numeric feature holds a non-numeric value (names the feature and the row).
        """
        x = self.array(frame, now)
        out: dict[str, Any] = {}
        for j, c in enumerate(self.columns()):
            if c in self.categorical:
                codes = np.where(np.isnan(x[:, j]), -1, x[:, j]).astype(np.int64)
                out[c] = pd.Categorical.from_codes(codes, dtype=self._dtypes[c])
            else:
                out[c] = x[:, j]
        return pd.DataFrame(out, columns=self.columns())

    def array(self, frame: pd.DataFrame | Mapping[str, Any], now: pd.Series | pd.Timestamp) -> np.ndarray:
        """The model matrix of ``frame`` (a DataFrame, or columns by name: arrays or lists of one length)
        as one float64 array, rows in order, columns as :meth:`columns`: what the boosters score (online
        and offline alike, :meth:`SavedModel.predict`). ``now`` is the request / impression time (one, or
        one per row).

        Numbers and booleans become floats; a categorical feature becomes the index of ``str(value)`` among
        its training levels (NaN when missing or unseen: the codes the libraries give a pandas categorical
        of those levels); a timestamp becomes its age in days at ``now``.

        Raises:
            KeyError: a feature is missing from ``frame``.
            ValueError: a numeric feature holds a non-numeric value (names the feature and the row).
        """
        missing = [f for f in self.features if f not in frame]
        if missing:
            raise KeyError(f"features {missing} missing from the frame (have {sorted(frame)})")
        n = len(frame[self.features[0]]) if self.features else 0
        x = np.empty((n, len(self.features)), dtype=np.float64)
        now_ts = pd.to_datetime(now, utc=True)
        for j, f in enumerate(self.features):
            s = frame[f]
            if n > 1 and isinstance(s, list) and not isinstance(now_ts, pd.Series) and _one_object(s):
                x[:, j] = self._column(f, s[:1], now_ts)[0]  # a user's value broadcast to every candidate
            else:
                x[:, j] = self._column(f, s, now_ts)
        return x

    def _column(self, f: str, s: Any, now_ts: pd.Series | pd.Timestamp) -> np.ndarray:
        """Feature ``f``'s model column of the values ``s`` (Series, array or list), as :meth:`array`."""
        if f in self.timestamps:  # a Series as it is (a tz-aware one's to_numpy() is objects)
            ts = pd.DatetimeIndex(pd.to_datetime(s if isinstance(s, pd.Series) else list(s), utc=True))
            now_j = pd.DatetimeIndex(now_ts) if isinstance(now_ts, pd.Series) else now_ts
            return (now_j - ts).total_seconds().to_numpy(dtype=float) / 86400.0
        values = s.to_numpy() if isinstance(s, pd.Series) else np.asarray(s)
        if f in self.categorical:
            return self._codes(f, values)
        if values.dtype.kind in "biuf":
            return values
        num = pd.to_numeric(values, errors="coerce").astype("float64")
        bad = np.isnan(num) & ~pd.isna(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"feature {f!r}, row {i}: {values[i]!r} is not numeric")
        return num

    def _codes(self, f: str, values: np.ndarray) -> np.ndarray:
        """Each value's index among ``f``'s training levels (as ``str``), NaN where missing or unseen."""
        values = values.astype(object, copy=False)
        null = pd.isna(values)
        keys = np.array([None if n else str(v) for v, n in zip(values, null, strict=True)], dtype=object)
        codes = self._dtypes[f].categories.get_indexer(keys).astype(np.float64)
        codes[codes < 0] = np.nan
        return codes

    @cached_property
    def _dtypes(self) -> dict[str, pd.CategoricalDtype]:
        """Each categorical feature's dtype (its training levels, fixed once fitted or loaded)."""
        return {f: pd.CategoricalDtype(categories=levels) for f, levels in self.categorical.items()}


def _one_object(values: list) -> bool:
    """Every entry is the same object (a user-side value broadcast to every candidate row)."""
    first = values[0]
    return all(v is first for v in values)


def fit_model(
    library: str, x: pd.DataFrame, y: np.ndarray, xv: pd.DataFrame, yv: np.ndarray, cfg: RankingConfig
) -> Any:
    """Train one binary classifier with early stopping on (xv, yv) log loss.

    Args:
        library: 'xgboost' | 'lightgbm'.
        x, y: training matrix and 0/1 labels.
        xv, yv: time-later validation matrix and labels (early stopping).
        cfg: boosting settings (n_estimators, learning_rate, max_depth, ...).

    Returns:
        The fitted sklearn-API model.
    """
    if library == "xgboost":
        import xgboost as xgb

        model = xgb.XGBClassifier(
            n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate,
            max_depth=cfg.max_depth,
            min_child_weight=cfg.min_child_weight,
            tree_method="hist",
            enable_categorical=True,
            eval_metric="logloss",
            early_stopping_rounds=cfg.early_stopping_rounds,
            n_jobs=cfg.threads,
            random_state=cfg.seed,
        )
        model.fit(x, y, eval_set=[(xv, yv)], verbose=False)
        return model
    if library == "lightgbm":
        import lightgbm as lgb

        model = lgb.LGBMClassifier(
            n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate,
            num_leaves=min(63, 2**cfg.max_depth - 1),
            min_sum_hessian_in_leaf=cfg.min_child_weight,
            n_jobs=cfg.threads,
            random_state=cfg.seed,
            verbose=-1,
        )
        model.fit(
            x,
            y,
            eval_set=[(xv, yv)],
            eval_metric="binary_logloss",
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
        )
        return model
    raise ValueError(f"unknown library {library!r}; expected 'xgboost' or 'lightgbm'")


def gain_importance(library: str, model: Any, columns: list[str]) -> dict[str, float]:
    """Total split gain per model column, normalised to sum 1 (0 for unused columns)."""
    if library == "xgboost":
        raw = model.get_booster().get_score(importance_type="total_gain")
        gains = np.array([raw.get(c, 0.0) for c in columns], dtype=float)
    else:
        gains = np.asarray(model.booster_.feature_importance(importance_type="gain"), dtype=float)
    total = gains.sum()
    return {c: float(g / total) if total > 0 else 0.0 for c, g in zip(columns, gains, strict=True)}


@dataclass
class SavedModel:
    """A trained model on disk: the library's own file plus the feature spec (``spec.json``)."""

    library: str  # 'xgboost' | 'lightgbm'
    spec: FeatureSpec  # frame -> matrix
    model: Any  # xgboost.XGBClassifier | lightgbm.Booster
    best_iteration: int  # boosting rounds kept

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.library == "xgboost":
            self.model.save_model(folder / "model.json")
        else:
            booster = self.model.booster_ if hasattr(self.model, "booster_") else self.model
            booster.save_model(str(folder / "model.txt"), num_iteration=self.best_iteration)
        meta = {"library": self.library, "best_iteration": self.best_iteration, "spec": asdict(self.spec)}
        (folder / "spec.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> SavedModel:
        folder = Path(folder)
        if not (folder / "spec.json").exists():
            raise FileNotFoundError(f"no trained model under {folder} (spec.json missing)")
        meta = json.loads((folder / "spec.json").read_text())
        spec = FeatureSpec(**meta["spec"])
        if meta["library"] == "xgboost":
            import xgboost as xgb

            model: Any = xgb.XGBClassifier()
            model.load_model(folder / "model.json")
        else:
            import lightgbm as lgb

            model = lgb.Booster(model_file=str(folder / "model.txt"))
        return cls(meta["library"], spec, model, int(meta["best_iteration"]))

    def predict(self, frame: pd.DataFrame | Mapping[str, Any], now: pd.Series | pd.Timestamp) -> np.ndarray:
        """P(label = 1) for each row of a Feast feature frame (or its columns by name), from the first
        ``best_iteration`` rounds. The booster scores :meth:`FeatureSpec.array` directly (no pandas
        matrix): the same categorical codes the libraries derive from the training matrix's categoricals,
        so the scores equal ``predict_proba`` on :meth:`FeatureSpec.matrix` (tested)."""
        x = self.spec.array(frame, now)
        if self.library == "xgboost":
            booster = self.model.get_booster()
            return booster.inplace_predict(x, iteration_range=(0, self.best_iteration))
        booster = self.model.booster_ if hasattr(self.model, "booster_") else self.model
        return booster.predict(x, num_iteration=self.best_iteration)


def best_iteration(library: str, model: Any) -> int:
    """Rounds kept by early stopping (all rounds when it never triggered)."""
    if library == "xgboost":
        return int(model.best_iteration) + 1
    return int(model.best_iteration_ or model.n_estimators)
