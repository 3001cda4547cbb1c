"""Feast's own remote online-store client against `feast serve` on the materialized repo.

An application that reads features over HTTP configures ``online_store: type: remote`` pointed at the
feature server; it must read the ``llm_predictions_online`` service (advertisers and the answer's
interests) for a user exactly as the embedded lookup does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adprior import store as st
from tests.conftest import RANKING_ANCHORS
from tests.support.redis import free_port

pytestmark = pytest.mark.slow


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"feast serve exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"feast serve did not answer on {url}")


def test_remote_online_store_client_reads_llm_predictions(ranking_world, tmp_path):
    cfg: st.StoreConfig = ranking_world["store"]
    day = RANKING_ANCHORS[-1]
    st.materialize(cfg, datetime.combine(day + timedelta(days=2), datetime.min.time(), tzinfo=UTC))
    preds = ranking_world["preds"][day].set_index("user_id")
    users = [int(u) for u in preds.index[:3]]
    port = free_port()
    feast = str(Path(sys.executable).with_name("feast"))
    proc = subprocess.Popen(
        [feast, "serve", "-h", "127.0.0.1", "-p", str(port)],
        cwd=cfg.repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "FEAST_USAGE": "False"},
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        client = tmp_path / "client"
        client.mkdir()
        registry = (Path(cfg.repo) / "data" / "registry.db").resolve()
        (client / "feature_store.yaml").write_text(
            "project: adprior\nprovider: local\n"
            f"registry: {registry}\n"
            f"online_store:\n  type: remote\n  path: http://127.0.0.1:{port}\n"
            "entity_key_serialization_version: 3\nauth:\n  type: no_auth\n"
        )
        from feast import FeatureStore

        remote = FeatureStore(repo_path=str(client))
        service = remote.get_feature_service("llm_predictions_online")
        got = remote.get_online_features(
            features=service, entity_rows=[{"user_id": u} for u in users]
        ).to_dict()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    local = {r["user_id"]: r for r in st.lookup(cfg, users)}
    for i, u in enumerate(got["user_id"]):
        assert [int(a) for a in got["advertiser_ids"][i]] == [int(a) for a in preds.loc[u, "advertiser_ids"]]
        assert list(got["interests"][i]) == list(preds.loc[u, "interests"]) == local[u]["interests"]
        assert len(got["interests"][i]) >= 1
