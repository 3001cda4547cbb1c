"""Online features of one user's candidate advertisers, read the way a ranker serves (issue 19, item 3).

``get_online_features`` with a feature service that holds pandas on-demand views costs ~90 ms for one
user and 250 candidate advertisers (bench/results/ranking.md): Feast fans the user's rows out to every
candidate as protos, converts the whole response to Python, Arrow and pandas for each on-demand view
and converts the outputs back to protos, before ``to_df`` converts everything once more.
:class:`CandidateFeatures` reads the same values once each and runs the same code on them:

1. the user-keyed views (profile, behaviour, a predictor's list and interests): the user's one row of
   each through the provider's ``online_read`` (Feast's per-view read that ``get_online_features`` calls
   too, without its proto response and its per-request plan), values converted from their protos as
   ``to_dict`` does;
2. the advertiser-keyed views (``advertiser_stats``) once per distinct candidate advertiser, the same
   way: one SQLite query / one Redis pipeline per view; rows may be kept for ``candidate_max_age_s``
   seconds (default 0: read per request);
3. the service's on-demand views through their registered UDFs (adprior.store.ondemand.transform, the
   frame the historical path gives them too) on the candidate rows, the user's values broadcast;
   the UDFs' code is feature_repo/udf_inputs.py, vectorised over one user's candidates.

The plan (which views, which features, which on-demand views) comes from the registry once, when the
reader is built. Online reads apply no ttl on either path (Feast 0.67), so both paths see the same rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from adprior.store.config import StoreConfig, StoreUnavailable, check_online, get_store, translate_outage
from adprior.store.historical import feature_refs
from adprior.store.ondemand import needed_views, output_names, request_fields, transform

ACTION = "online ranking features"
# Proto kinds that feast_value_type_to_python_type returns as they are (for a non-UUID value type).
PLAIN_KINDS = frozenset({"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val"})


def _plain_types() -> frozenset:
    from feast.value_type import ValueType

    return frozenset(
        {
            ValueType.INT32,
            ValueType.INT64,
            ValueType.FLOAT,
            ValueType.DOUBLE,
            ValueType.STRING,
            ValueType.BOOL,
        }
    )


@dataclass
class CandidateView:
    """A batch view read for a request (user- or candidate-keyed): its registry object, features, their
    value types, its one join key."""

    fv: Any  # feast.FeatureView
    features: list[str]  # sorted
    types: list[Any]  # feast ValueType of each feature
    key: str  # its one join key (user_key or candidate_key)
    key_type: Any  # ValueType of that key
    rows: dict[int, tuple[float, tuple]] = field(default_factory=dict)  # id -> (read at, values)


class CandidateFeatures:
    """The feature frame of (one user, candidate advertisers) for a feature service, fast.

    Args:
        cfg: the store.
        service: feature service name (its views keyed by ``user_key`` or ``candidate_key``; its
            on-demand views pandas-mode with request fields among ``candidate_fields``).
        candidate_max_age_s: keep candidate-keyed rows this long (monotonic seconds) before reading them
            again; 0 reads every request's candidates (what the store holds at that moment). Kept rows
            are never evicted, only refreshed: the cache holds at most one row per advertiser seen.
        store: a ``feast.FeatureStore`` of ``cfg`` to use (None: one is built).
        user_key / candidate_key: the join keys of the two kinds of views.
        candidate_fields: request fields that carry the candidate's id.

    Raises:
        ValueError: the service reads a view with other join keys, or an on-demand view needs another
            request field.
    """

    def __init__(
        self,
        cfg: StoreConfig,
        service: str,
        candidate_max_age_s: float = 0.0,
        store: Any = None,
        user_key: str = "user_id",
        candidate_key: str = "advertiser_id",
        candidate_fields: tuple[str, ...] = ("candidate_advertiser_id",),
    ) -> None:
        from feast.type_map import feast_value_type_to_python_type

        self.cfg, self.service, self.max_age = cfg, service, float(candidate_max_age_s)
        self.user_key, self.candidate_key, self.candidate_fields = user_key, candidate_key, candidate_fields
        self.fs = store or get_store(cfg)
        self._convert, self._plain = feast_value_type_to_python_type, _plain_types()
        self.requested = feature_refs(self.fs, service)
        self.names = output_names(self.requested, full_feature_names=False)
        all_odfvs = {v.name: v for v in self.fs.list_on_demand_feature_views(allow_cache=True)}
        self.odfvs = [all_odfvs[n] for n in dict.fromkeys(v for v, _ in self.requested if v in all_odfvs)]
        for odfv in self.odfvs:
            extra = sorted(set(request_fields(odfv)) - set(candidate_fields))
            if extra:
                raise ValueError(f"on-demand view {odfv.name!r} needs request fields {extra}")
        self.user_views: list[CandidateView] = []  # read with the user's id
        self.views: list[CandidateView] = []  # read with the candidates' ids
        for name, feats in sorted(needed_views(self.requested, {o.name: o for o in self.odfvs}).items()):
            fv = self.fs.get_feature_view(name, allow_registry_cache=True)
            keys = [c.name for c in fv.entity_columns]
            if keys not in ([user_key], [candidate_key]):
                raise ValueError(
                    f"view {name!r} is keyed by {keys}; expected [{user_key!r}] or [{candidate_key!r}]"
                )
            dtypes = {f.name: f.dtype.to_value_type() for f in fv.features}
            view = CandidateView(
                fv,
                sorted(feats),
                [dtypes[f] for f in sorted(feats)],
                keys[0],
                fv.entity_columns[0].dtype.to_value_type(),
            )
            (self.user_views if keys == [user_key] else self.views).append(view)

    def frame(self, user_id: int, advertiser_ids: list[int]) -> pd.DataFrame:
        """One row per advertiser id (in order): ``user_key``, ``candidate_key`` and the service's features
        (short names), the values ``get_online_features(service, ...).to_df()`` gives for the same rows.

        Raises:
            StoreUnavailable: the online store cannot be reached.
        """
        return pd.DataFrame(self.columns(user_id, advertiser_ids))

    def columns(self, user_id: int, advertiser_ids: list[int]) -> dict[str, Any]:
        """The columns of :meth:`frame` by name (lists or arrays, one value per advertiser id), without
        building the DataFrame: what a scorer that reads columns (``FeatureSpec.array``) needs.

        Raises:
            StoreUnavailable: the online store cannot be reached.
        """
        ids = [int(a) for a in advertiser_ids]
        n = len(ids)
        try:
            with translate_outage(self.cfg, ACTION):
                got: dict[tuple[str, str], Any] = {k: [v] * n for k, v in self.user_row(user_id).items()}
                for view in self.views:
                    rows = self._rows(view, ids)
                    for j, f in enumerate(view.features):
                        got[(view.fv.name, f)] = [r[j] for r in rows]
        except StoreUnavailable:
            raise
        except Exception:
            check_online(self.cfg, ACTION)  # an outage gets its clear error, else re-raise
            raise
        request = {f: np.asarray(ids, dtype=np.int64) for f in self.candidate_fields}
        index = pd.RangeIndex(n)
        for odfv in self.odfvs:
            out = transform(odfv, got, request, index)
            for f in odfv.features:
                got[(odfv.name, f.name)] = out[f.name].to_numpy()
        cols: dict[str, Any] = {
            self.user_key: np.full(n, int(user_id), dtype=np.int64),
            self.candidate_key: ids,
        }
        for (view, feat), name in zip(self.requested, self.names, strict=True):
            cols[name] = got[(view, feat)]
        return cols

    def user_row(self, user_id: int) -> dict[tuple[str, str], Any]:
        """(view, feature) -> value of the user-keyed features: the user's row of each view (None where
        absent), one ``online_read`` per view."""
        out: dict[tuple[str, str], Any] = {}
        for view in self.user_views:
            (row,) = self.read(view, [int(user_id)])
            out.update(((view.fv.name, f), v) for f, v in zip(view.features, row, strict=True))
        return out

    def _rows(self, view: CandidateView, ids: list[int]) -> list[tuple]:
        """Each id's values of ``view.features`` (None where absent), from the cache while fresh."""
        if self.max_age <= 0:
            return self.read(view, ids)
        now = time.monotonic()
        stale = [a for a in dict.fromkeys(ids) if a not in view.rows or now - view.rows[a][0] > self.max_age]
        if stale:
            for a, row in zip(stale, self.read(view, stale), strict=True):
                view.rows[a] = (now, row)
        return [view.rows[a][1] for a in ids]

    def read(self, view: CandidateView, ids: list[int]) -> list[tuple]:
        """One ``online_read`` of the ids' rows (keys of ``view.key``), values converted as
        ``OnlineResponse.to_dict`` does."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import python_values_to_proto_values

        if not ids:
            return []
        keys = [
            EntityKey(join_keys=[view.key], entity_values=[v])
            for v in python_values_to_proto_values(ids, view.key_type)
        ]
        read = self.fs.provider.online_read(
            config=self.fs.config,
            table=view.fv,
            entity_keys=keys,
            requested_features=list(view.features),  # the Redis store appends to the list it gets
        )
        empty = (None,) * len(view.features)
        return [
            empty
            if values is None
            else tuple(self._value(values.get(f), t) for f, t in zip(view.features, view.types, strict=True))
            for _, values in read
        ]

    def _value(self, proto: Any, value_type: Any) -> Any:
        """A value proto as ``feast.type_map.feast_value_type_to_python_type`` returns it (plain scalars
        directly, everything else through it)."""
        if proto is None:
            return None
        kind = proto.WhichOneof("val")
        if kind is None:
            return None
        if kind in PLAIN_KINDS and value_type in self._plain:
            return getattr(proto, kind)
        return self._convert(proto, value_type)
