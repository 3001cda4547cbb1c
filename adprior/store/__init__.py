"""The Feast feature store of adprior (design.md "Feast"): its public API in one place.

Callers write ``from adprior import store as st; st.materialize(...)``. Each name is defined in one
module of this package: ``config`` (StoreConfig, the yaml of a configuration, the FeatureStore, table
folders, online-store outages), ``repo`` (the shipped Feast definitions, a copy per experiment,
``feast apply``), ``offline`` (validated parquet partitions, the day's feature tables), ``online``
(materialize, lookup), ``historical`` (point-in-time training rows), ``candidates`` (the online
features of one user's candidate advertisers, fast) and ``ondemand`` (how both of the latter run the
on-demand views). The schemas of the offline tables are in :mod:`adprior.contracts`; a test Redis
server in tests/support/redis.py.
"""

from adprior.store.candidates import CandidateFeatures
from adprior.store.config import (
    StoreConfig,
    StoreUnavailable,
    check_online,
    get_store,
    offline_dir,
    yaml_path,
)
from adprior.store.historical import historical_features
from adprior.store.offline import write_daily_features, write_partition
from adprior.store.online import lookup, materialize
from adprior.store.repo import PROJECT_REPO, apply, init_repo

__all__ = [
    "PROJECT_REPO",
    "CandidateFeatures",
    "StoreConfig",
    "StoreUnavailable",
    "apply",
    "check_online",
    "get_store",
    "historical_features",
    "init_repo",
    "lookup",
    "materialize",
    "offline_dir",
    "write_daily_features",
    "write_partition",
    "yaml_path",
]
