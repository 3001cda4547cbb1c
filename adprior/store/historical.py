"""Point-in-time training rows from the offline store: :func:`historical_features`, one output row per
entity row, around the Feast 0.67 file-store bugs that lose or break rows (see its docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from adprior.store.config import StoreConfig, get_store, has_offline_files
from adprior.store.ondemand import needed_views, output_names, request_fields, transform


def _source_keys(cfg: StoreConfig, fv: Any) -> pd.DataFrame:
    """Distinct entity keys of a batch view's offline table (empty frame when it has no files)."""
    keys = [c.name for c in fv.entity_columns]
    if not has_offline_files(cfg, fv):
        return pd.DataFrame({k: pd.Series(dtype="int64") for k in keys})
    table = pads.dataset(Path(cfg.repo) / fv.batch_source.path, format="parquet").to_table(columns=keys)
    return table.group_by(keys).aggregate([]).to_pandas()


def feature_refs(store: Any, features: list[str] | str) -> list[tuple[str, str]]:
    """(view, feature) pairs of a feature service name, one 'view:feature' ref, or a list of refs."""
    if isinstance(features, str) and ":" not in features:
        service = store.get_feature_service(features)
        return [(p.name_to_use(), f.name) for p in service.feature_view_projections for f in p.features]
    refs = [features] if isinstance(features, str) else list(features)
    return [(r.split(":", 1)[0], r.split(":", 1)[1]) for r in refs]


def historical_features(
    cfg: StoreConfig,
    entity_df: pd.DataFrame,
    features: list[str] | str = "ranking_llm",
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """Point-in-time features for every row of ``entity_df``: one output row per input row, same order.

    Works around Feast 0.67 file (dask) offline-store bugs that lose or break training rows when
    ``get_historical_features`` is called with several views at once: (1) entity rows that share the
    join keys of the views joined so far and the timestamp are collapsed into one (feast#6787,
    feast#5590: e.g. all candidates of one impression); (2) an entity row whose only feature rows lie
    outside ``[t - ttl, t]`` (e.g. only a later prediction) is dropped instead of getting nulls;
    (3) an entity without any row makes it raise when the source has several files. Here each batch
    view is fetched by Feast on the distinct (join keys, timestamp) of that view alone, restricted to
    entities its table has, and left-joined back; on-demand views then run their own UDF on the
    result. Point-in-time semantics are Feast's: the latest row with t - ttl <= event_timestamp <= t
    (ties: latest created_timestamp). Dask's merge runs with the 'tasks' shuffle (its default 'disk'
    shuffle is ~10x slower on a folder of many small files). The same calls go through the Spark
    offline store with ``cfg.offline='spark'`` (same values; its naive UTC timestamp features are
    made UTC-aware like the file store's).

    Args:
        cfg: the store.
        entity_df: join keys of the requested views, ``event_timestamp`` and the request fields of
            the on-demand views (``candidate_advertiser_id``); other columns are kept as they are.
        features: a feature service name, or feature refs ``view:feature``.
        full_feature_names: name columns ``view__feature`` instead of ``feature``.

    Returns:
        ``entity_df``'s columns followed by the requested features (nothing else).
    """
    import dask

    store = get_store(cfg)
    requested = feature_refs(store, features)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    names = output_names(requested, full_feature_names)
    needed = needed_views(requested, odfvs)  # batch view -> features, incl. the inputs of requested ODFVs
    out = entity_df.reset_index(drop=True).copy()
    ts = pd.to_datetime(out["event_timestamp"])
    key_ts = "__adprior_ts"
    out[key_ts] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    got: dict[tuple[str, str], pd.Series] = {}
    for view, feats in sorted(needed.items()):
        fv = store.get_feature_view(view)
        keys = [c.name for c in fv.entity_columns]
        sub = out[[*keys, key_ts]].drop_duplicates()
        # Only entities the source has rows for: an entity without any row makes the dask store's
        # sort on the (then null) timestamps fail when the source has several files.
        sub = sub.merge(_source_keys(cfg, fv), on=keys, how="inner").rename(
            columns={key_ts: "event_timestamp"}
        )
        refs = [f"{view}:{f}" for f in sorted(feats)]
        cols = [f"{view}__{f}" for f in sorted(feats)]
        if len(sub):
            with dask.config.set({"dataframe.shuffle.method": "tasks"}):  # default 'disk': ~10x slower
                res = store.get_historical_features(
                    entity_df=sub, features=refs, full_feature_names=True
                ).to_df()
            res = res.rename(columns={"event_timestamp": key_ts})
            res[key_ts] = pd.to_datetime(res[key_ts], utc=True)
            for c in cols:  # the Spark store returns timestamp features naive (session time zone UTC)
                if isinstance(res[c].dtype, np.dtype) and res[c].dtype.kind == "M":
                    res[c] = res[c].dt.tz_localize("UTC")
        else:
            res = pd.DataFrame(columns=[*keys, key_ts, *cols])
            res[key_ts] = pd.to_datetime(res[key_ts], utc=True)
        merged = out[[*keys, key_ts]].merge(res[[*keys, key_ts, *cols]], on=[*keys, key_ts], how="left")
        for f, c in zip(sorted(feats), cols, strict=True):
            got[(view, f)] = merged[c]
    for name in sorted({v for v, _ in requested if v in odfvs}):
        odfv = odfvs[name]
        result = transform(odfv, got, {f: out[f] for f in request_fields(odfv)}, out.index)
        for f in odfv.features:
            got[(name, f.name)] = result[f.name]
    out = out.drop(columns=[key_ts])
    for (view, feat), col in zip(requested, names, strict=True):
        out[col] = got[(view, feat)].to_numpy()
    return out
