"""feature_repo agrees with adprior.contracts, the one owner of the offline-table schemas.

Every batch source of the Feast repo reads a contract table (``data/offline/<table>``) whose schema has
the source's timestamp columns; every feature view over it reads columns the contract has, with the
same type (Feast dtype vs pyarrow type), and its entity join keys plus the event timestamp are the
table's key columns. A field renamed or retyped on either side fails here rather than at
materialization (Feast only notices when it reads the parquet files).
"""

from __future__ import annotations

import copy
import os
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pytest

from adprior.contracts import KEY_COLUMNS, TABLE_SCHEMAS, TIMESTAMP
from adprior.store.repo import repo_imports
from tests.support.paths import FEATURE_REPO

pytestmark = pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature")


def arrow_type(dtype: Any) -> pa.DataType:
    """The pyarrow type of the contract column that a Feast field of ``dtype`` reads."""
    from feast.types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp

    if isinstance(dtype, Array):
        return pa.list_(arrow_type(dtype.base_type))
    return {
        Int64: pa.int64(),
        Int32: pa.int32(),
        Float64: pa.float64(),
        Float32: pa.float32(),
        String: pa.string(),
        Bool: pa.bool_(),
        Bytes: pa.binary(),
        UnixTimestamp: TIMESTAMP,
    }[dtype]


def join_key_type(value_type: Any) -> pa.DataType:
    """The pyarrow type of an entity join key of Feast ``value_type``."""
    from feast import ValueType

    return {ValueType.INT64: pa.int64(), ValueType.INT32: pa.int32(), ValueType.STRING: pa.string()}[
        value_type
    ]


def contract_table(source: Any) -> str | None:
    """The offline table a data source reads (its path ends in ``data/offline/<table>``), else None."""
    path = getattr(source, "path", None)
    if not path:
        return None
    p = PurePosixPath(path)
    return p.name if p.parent.parts[-2:] == ("data", "offline") else None


def mismatches(contents: Any, schemas: dict[str, pa.Schema]) -> list[str]:
    """Every disagreement between a parsed Feast repo (``RepoContents``) and the table ``schemas``."""
    from feast import RequestSource

    out: list[str] = []
    for ds in contents.data_sources:
        if isinstance(ds, RequestSource):
            continue  # request fields come with each request, from no table
        table = contract_table(ds)
        if table not in schemas:
            out.append(f"source {ds.name}: reads {getattr(ds, 'path', None)!r}, no contract table")
            continue
        for col in (ds.timestamp_field, ds.created_timestamp_column):
            if col not in schemas[table].names:
                out.append(f"source {ds.name}: timestamp column {col!r} is not in contract {table!r}")
            elif schemas[table].field(col).type != TIMESTAMP:
                out.append(f"source {ds.name}: {table}.{col} is {schemas[table].field(col).type}")
    entities = {e.name: e for e in contents.entities}
    for fv in contents.feature_views:
        table = contract_table(fv.batch_source)
        if table not in schemas:
            out.append(f"view {fv.name}: source {fv.batch_source.name} is no contract table")
            continue
        schema = schemas[table]
        keys = [entities[name].join_key for name in fv.entities]
        if (*keys, fv.batch_source.timestamp_field) != KEY_COLUMNS[table]:
            out.append(f"view {fv.name}: keys {keys} + timestamp are not {table}'s {KEY_COLUMNS[table]}")
        fields = [(k, join_key_type(entities[n].value_type)) for n, k in zip(fv.entities, keys, strict=True)]
        fields += [(f.name, arrow_type(f.dtype)) for f in fv.features]
        for name, want in fields:
            if name not in schema.names:
                out.append(f"view {fv.name}: {name!r} is not a column of contract {table!r}")
            elif schema.field(name).type != want:
                out.append(f"view {fv.name}: {table}.{name} is {schema.field(name).type}, Feast reads {want}")
    return out


@pytest.fixture(scope="module")
def repo() -> Any:
    """What ``feast apply`` registers from feature_repo (file offline store: relative source paths)."""
    from feast.repo_operations import parse_repo

    before = os.environ.pop("ADPRIOR_OFFLINE_STORE", None)
    try:
        with repo_imports(FEATURE_REPO):
            return parse_repo(FEATURE_REPO)
    finally:
        if before is not None:
            os.environ["ADPRIOR_OFFLINE_STORE"] = before


def test_feature_views_read_their_contract_tables(repo):
    assert mismatches(repo, TABLE_SCHEMAS) == []
    read = {contract_table(fv.batch_source) for fv in repo.feature_views}
    assert read == set(TABLE_SCHEMAS)  # every contract table feeds a view, every view a contract table
    assert len(repo.feature_views) == 7  # two prediction views per predictor (llm, heuristic)
    by_table: dict[str, list[str]] = {}
    for fv in repo.feature_views:
        by_table.setdefault(contract_table(fv.batch_source) or "", []).append(fv.name)
    assert sorted(by_table["heuristic_predictions"]) == [
        "heuristic_advertiser_predictions",
        "heuristic_user_interests",
    ]
    views = {fv.name: fv for fv in repo.feature_views}
    for kind in ("advertiser_predictions", "user_interests"):  # one definition, two sources
        llm, heur = views[f"llm_{kind}"], views[f"heuristic_{kind}"]
        assert [(f.name, f.dtype) for f in llm.features] == [(f.name, f.dtype) for f in heur.features]
        assert (llm.ttl, llm.entities) == (heur.ttl, heur.entities)


def test_a_field_renamed_on_either_side_fails(repo):
    profile = TABLE_SCHEMAS["user_profile"]
    i = profile.get_field_index("age")
    renamed = {**TABLE_SCHEMAS, "user_profile": profile.set(i, profile.field(i).with_name("years"))}
    assert mismatches(repo, renamed) == [
        "view user_profile: 'age' is not a column of contract 'user_profile'"
    ]
    retyped = {**TABLE_SCHEMAS, "user_profile": profile.set(i, profile.field(i).with_type(pa.int32()))}
    assert mismatches(repo, retyped) == ["view user_profile: user_profile.age is int32, Feast reads int64"]
    no_created = {
        **TABLE_SCHEMAS,
        "user_profile": profile.remove(profile.get_field_index("created_timestamp")),
    }
    assert mismatches(repo, no_created) == [
        "source user_profile_source: timestamp column 'created_timestamp' is not in contract 'user_profile'"
    ]

    from feast import Field

    view = next(fv for fv in repo.feature_views if fv.name == "advertiser_stats")
    changed = copy.copy(view)
    changed.features = [
        Field(name="brand", dtype=f.dtype) if f.name == "brand_group" else f for f in view.features
    ]
    others = [fv for fv in repo.feature_views if fv is not view]
    assert mismatches(repo._replace(feature_views=[*others, changed]), TABLE_SCHEMAS) == [
        "view advertiser_stats: 'brand' is not a column of contract 'advertiser_stats'"
    ]
