"""Running a feature service's on-demand views ourselves, the same way offline and online.

Feast's own paths run a pandas on-demand view per request from its proto response (online) or not at
all correctly on several views at once (offline, see :func:`adprior.store.historical_features`). Both
of our paths instead read the batch views a service needs (:func:`needed_views`: its own features plus
every on-demand view's inputs), then hand each on-demand view's UDF the same frame (:func:`transform`:
every input feature under its short and its ``view__feature`` name, as Feast does, plus the view's
request fields) — so the registered UDF, and only it, computes those features on both paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


def output_names(requested: list[tuple[str, str]], full_feature_names: bool) -> list[str]:
    """Column names of the requested features; raises when short names collide."""
    names = [f"{v}__{f}" if full_feature_names else f for v, f in requested]
    if len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"feature names {dup} collide; pass full_feature_names=True")
    return names


def needed_views(requested: list[tuple[str, str]], odfvs: Mapping[str, Any]) -> dict[str, set[str]]:
    """Batch view -> the features to read: the requested ones and every requested on-demand view's inputs."""
    needed: dict[str, set[str]] = {}
    for view, feat in requested:
        if view in odfvs:
            for proj in odfvs[view].source_feature_view_projections.values():
                needed.setdefault(proj.name, set()).update(f.name for f in proj.features)
        else:
            needed.setdefault(view, set()).add(feat)
    return needed


def request_fields(odfv: Any) -> list[str]:
    """The request-source fields an on-demand view reads (e.g. ``candidate_advertiser_id``)."""
    return [field.name for req in odfv.source_request_sources.values() for field in req.schema]


def transform(
    odfv: Any, got: Mapping[tuple[str, str], Any], request: Mapping[str, Any], index: pd.Index
) -> pd.DataFrame:
    """The on-demand view's outputs (its UDF) on rows ``index``, positionally (0..n-1 index).

    Args:
        odfv: a pandas-mode ``OnDemandFeatureView``.
        got: (batch view, feature) -> the column of every input feature (Series on ``index``, array or list).
        request: request field -> its column.
        index: the rows' index.

    Raises:
        ValueError: the view is not in pandas mode.
    """
    if odfv.mode != "pandas":
        raise ValueError(f"on-demand view {odfv.name!r}: only pandas mode is supported here")
    cols: dict[str, Any] = {}
    for proj in odfv.source_feature_view_projections.values():
        for f in proj.features:
            cols[f.name] = cols[f"{proj.name_to_use()}__{f.name}"] = got[(proj.name, f.name)]
    for name in request_fields(odfv):
        cols[name] = request[name]
    return odfv.feature_transformation.transform(pd.DataFrame(cols, index=index)).reset_index(drop=True)
