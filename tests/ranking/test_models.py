"""ranking/models.py: FeatureSpec.matrix, which casts whole columns, equals its value-by-value definition
(written out here as the oracle) on random frames of every column kind, nulls and unseen levels included,
with a shuffled index and a per-row request time. (The rest of models.py: tests/ranking/test_ranking.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.models import FeatureSpec


def oracle(spec: FeatureSpec, frame: pd.DataFrame, now: pd.Series | pd.Timestamp) -> pd.DataFrame:
    out = {}
    now_ts = pd.to_datetime(now, utc=True)
    for f in spec.features:
        s = frame[f].reset_index(drop=True)
        if f in spec.timestamps:
            ts = pd.to_datetime(s, utc=True)
            age = (
                (pd.Series(now_ts).reset_index(drop=True) - ts)
                if isinstance(now_ts, pd.Series)
                else now_ts - ts
            )
            out[f"{f}_age_days"] = age.dt.total_seconds().to_numpy(dtype=float) / 86400.0
        elif f in spec.categorical:
            vals = s.astype(object).where(s.notna(), None)
            out[f] = pd.Categorical(
                [None if v is None else str(v) for v in vals], categories=spec.categorical[f]
            )
        else:
            out[f] = pd.to_numeric(s, errors="raise").astype("float64").to_numpy()
    return pd.DataFrame(out, columns=spec.columns())


def random_frame(n: int, seed: int) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-06-01", tz="UTC")
    return pd.DataFrame(
        {
            "i": r.integers(0, 10, n),
            "f": np.where(r.random(n) < 0.2, np.nan, r.random(n)),
            "b": r.random(n) < 0.5,
            "b_null": pd.Series([None if i % 4 == 0 else bool(i % 2) for i in range(n)], dtype=object),
            "num_obj": pd.Series(
                [None if i % 5 == 0 else [1.5, 2, 3.0][i % 3] for i in range(n)], dtype=object
            ),
            "c": pd.Series(
                [None if i % 6 == 0 else ["x", "y", "z", "new", 3][i % 5] for i in range(n)], dtype=object
            ),
            "c_nan": pd.Series([np.nan if i % 6 == 0 else ["a", "b"][i % 2] for i in range(n)], dtype=object),
            "c_str": pd.Series([None if i % 3 == 0 else "q" for i in range(n)], dtype="string"),
            "c_none": pd.Series([None] * n, dtype=object),
            "t": pd.Series([None if i % 7 == 0 else t0 + pd.Timedelta(hours=int(i)) for i in range(n)]),
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrix_equals_the_value_by_value_conversion(seed):
    spec = FeatureSpec(
        features=["i", "f", "b", "b_null", "num_obj", "c", "c_nan", "c_str", "c_none", "t"],
        categorical={
            "b_null": ["False", "True"],
            "c": ["x", "y", "z", "3"],
            "c_nan": ["a", "b"],
            "c_str": ["q"],
            "c_none": [],
        },
        timestamps=["t"],
    )
    frame = random_frame(300, seed).sample(frac=1.0, random_state=seed)  # an index out of order
    for now in (
        pd.Timestamp("2026-06-20", tz="UTC"),
        pd.Series(pd.date_range("2026-06-20", periods=len(frame), freq="h", tz="UTC")),
    ):
        got, want = spec.matrix(frame, now), oracle(spec, frame, now)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got["c"].isna().sum() == want["c"].isna().sum() > 0  # unseen 'new' and nulls are missing
        # the float array the boosters score: categoricals as the matrix's codes (NaN for -1), the rest as is
        x = spec.array(frame, now)
        for j, c in enumerate(spec.columns()):
            col = got[c].cat.codes.to_numpy() if c in spec.categorical else got[c].to_numpy()
            np.testing.assert_array_equal(
                np.where(np.isnan(x[:, j]), -1, x[:, j]) if c in spec.categorical else x[:, j], col
            )
        # columns given as plain lists (the online path's) give the same array
        np.testing.assert_array_equal(spec.array({f: frame[f].tolist() for f in spec.features}, now), x)
    again = FeatureSpec(spec.features, spec.categorical, spec.timestamps)  # levels are per spec
    pd.testing.assert_frame_equal(again.matrix(frame, now), spec.matrix(frame, now))


@pytest.mark.parametrize("row", [0, 3, 6, 7])
def test_a_broadcast_user_value_gives_the_column_of_its_copies(row):
    """The online path broadcasts a user's value as one object repeated (``[v] * n``); ``array`` converts it
    once, and the result equals the conversion of n separate copies (a frame column), nulls included."""
    spec = FeatureSpec(
        features=["i", "f", "num_obj", "c", "c_nan", "t"],
        categorical={"c": ["x", "y", "z", "3"], "c_nan": ["a", "b"]},
        timestamps=["t"],
    )
    one = random_frame(10, 0).iloc[row]
    n, now = 40, pd.Timestamp("2026-06-20", tz="UTC")
    broadcast = {f: [one[f]] * n for f in spec.features}
    copies = pd.DataFrame({f: pd.Series([one[f]] * n, dtype=object) for f in spec.features})
    copies["t"] = pd.to_datetime(copies["t"], utc=True)
    np.testing.assert_array_equal(spec.array(broadcast, now), spec.array(copies, now))
    with pytest.raises(ValueError, match="feature 'f', row 0"):
        spec.array({**broadcast, "f": ["oops"] * n}, now)
