"""infra/: deployment files parse and keep secrets out; the service scripts start real processes on
loopback, are idempotent and stop what they started (redis always; Spark and Ray when installed)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.paths import ROOT

ROOT = ROOT
INFRA = ROOT / "infra"
VENV = ROOT / ".venv"
SCRIPTS = ["lib.sh", "redis.sh", "spark.sh", "ray.sh", "feature-server.sh"]


def free_port(avoid: range | None = None) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if avoid is None or (port not in avoid and port + 1 not in avoid):
            return port


def run(script: str, action: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(INFRA / script), action],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def script_env(state: Path, unset: tuple[str, ...] = ("ADPRIOR_BIND",), **settings: str) -> dict[str, str]:
    """A service script's environment: this process's, with state folder ``state`` and ``settings``, minus
    the variables ``unset``."""
    env = dict(os.environ, ADPRIOR_INFRA_STATE=str(state), **settings)
    for k in unset:
        env.pop(k, None)
    return env


def listeners(port: int) -> list[str]:
    """Local addresses listening on TCP ``port`` (from ss)."""
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    addrs = []
    for line in out.splitlines():
        local = line.split()[3]
        host, _, p = local.rpartition(":")
        if p == str(port):
            addrs.append(host)
    return addrs


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


# ------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_valid_bash_with_strict_mode_and_usage(script):
    path = INFRA / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    if script != "lib.sh":
        assert "set -euo pipefail" in text
        assert re.search(r"^# Usage: infra/" + re.escape(script), text, re.M)
        r = subprocess.run(["bash", str(path)], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "Usage" in r.stderr


def _no_literal_secret(text: str) -> None:
    for m in re.finditer(r"password[ \t]*[=:][ \t]*([^\s,\"']+)", text, re.I):
        value = m.group(1)
        assert value.startswith(("$", "***", ".", "<")), f"literal password in: {m.group(0)!r}"
    assert "requirepass" not in text or re.search(r"requirepass \"\$\$\(cat /run/secrets/", text)


def test_docker_compose_parses_publishes_on_loopback_and_has_no_password():
    text = (INFRA / "docker-compose.yml").read_text()
    doc = yaml.safe_load(text)  # Docker is not available here: only the YAML is checked
    services = doc["services"]
    assert set(services) == {"redis", "feature-server"}
    for svc in services.values():
        for port in svc["ports"]:
            assert port.startswith("127.0.0.1:"), port
        assert svc["secrets"] == ["redis_password"]
    assert doc["secrets"]["redis_password"] == {"environment": "ADPRIOR_REDIS_PASSWORD"}
    assert services["feature-server"]["build"]["dockerfile"] == "infra/feature-server.Dockerfile"
    assert "feast -f feature_store.redis.yaml serve -h 0.0.0.0" in services["feature-server"]["command"][2]
    assert "redis:6379" in services["feature-server"]["command"][2]
    _no_literal_secret(text)
    dockerfile = (INFRA / "feature-server.Dockerfile").read_text()
    assert '"feast[redis]==0.67.0"' in dockerfile and "COPY feature_repo/" in dockerfile
    assert "USER feast" in dockerfile
    _no_literal_secret(dockerfile)


@pytest.mark.parametrize(
    "name,redis_type",
    [
        ("feature_store.redis-cluster.yaml", "redis_cluster"),
        ("feature_store.redis-sentinel.yaml", "redis_sentinel"),
    ],
)
def test_feast_yaml_examples(name, redis_type, monkeypatch):
    text = (INFRA / "feast" / name).read_text()
    _no_literal_secret(text)
    doc = yaml.safe_load(text)
    base = yaml.safe_load((ROOT / "feature_repo" / "feature_store.redis.yaml").read_text())
    assert doc["online_store"]["redis_type"] == redis_type
    assert doc["online_store"]["connection_string"] == "${ADPRIOR_REDIS}"
    assert doc["online_store"]["key_ttl_seconds"] == base["online_store"]["key_ttl_seconds"]
    for key in ("project", "registry", "offline_store", "entity_key_serialization_version"):
        assert doc[key] == base[key]
    # Feast itself accepts it, with the variables expanded from the environment
    from feast.repo_config import load_repo_config

    monkeypatch.setenv("ADPRIOR_REDIS", "10.0.0.1:6379,10.0.0.2:6379,password=x,ssl=true")
    monkeypatch.setenv("ADPRIOR_REDIS_SENTINEL_MASTER", "adprior")
    cfg = load_repo_config(ROOT / "feature_repo", INFRA / "feast" / name)
    assert str(cfg.online_store.redis_type).endswith(redis_type)
    if redis_type == "redis_sentinel":
        assert cfg.online_store.sentinel_master == "adprior"


def test_spark_defaults_example_holds_no_secret():
    text = (INFRA / "spark" / "spark-defaults.conf").read_text()
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "secret" not in line, line


# ------------------------------------------------------------------------------------------ redis


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_script_password_loopback_idempotent_stop(tmp_path):
    import redis

    password = 'pw with space "and" quote-' + os.urandom(4).hex()
    port = free_port()
    env = script_env(tmp_path / "state", ADPRIOR_REDIS_PORT=str(port), ADPRIOR_REDIS_PASSWORD=password)
    try:
        r = run("redis.sh", "start", env)
        assert r.returncode == 0, r.stderr
        assert f"ADPRIOR_REDIS=127.0.0.1:{port},password=***" in r.stdout
        assert (
            'export ADPRIOR_REDIS="127.0.0.1:' + str(port) + ',password=${ADPRIOR_REDIS_PASSWORD}"'
            in r.stdout
        )
        assert password not in r.stdout + r.stderr
        pid = int((tmp_path / "state" / "redis" / "redis.pid").read_text())
        assert alive(pid)
        # the password works, no password does not
        assert redis.Redis(host="127.0.0.1", port=port, password=password).ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        # loopback only
        assert listeners(port) == ["127.0.0.1"]
        # the password is neither on the command line nor in the state folder
        assert password not in Path(f"/proc/{pid}/cmdline").read_text()
        for f in (tmp_path / "state").rglob("*"):
            if f.is_file():
                assert password.encode() not in f.read_bytes(), f
        # idempotent: a second start reports the same server
        r2 = run("redis.sh", "start", env)
        assert r2.returncode == 0 and f"pid {pid}" in r2.stdout
        assert run("redis.sh", "status", env).returncode == 0
    finally:
        r = run("redis.sh", "stop", env)
    assert r.returncode == 0, r.stderr
    time.sleep(0.2)
    assert not alive(pid)
    assert listeners(port) == []
    assert run("redis.sh", "status", env).returncode == 3
    assert run("redis.sh", "stop", env).returncode == 0  # stopping twice is fine


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_script_refuses_public_bind_without_password(tmp_path):
    env = script_env(
        tmp_path, ("ADPRIOR_REDIS_PASSWORD",), ADPRIOR_REDIS_PORT=str(free_port()), ADPRIOR_BIND="0.0.0.0"
    )
    r = run("redis.sh", "start", env)
    assert r.returncode != 0 and "without a password" in r.stderr
    assert not (tmp_path / "redis" / "redis.pid").exists()


# ------------------------------------------------------------------------------------- spark / ray


@pytest.mark.skipif(
    shutil.which("java") is None or not (VENV / "bin" / "python").exists(),
    reason="needs Java and the venv's pyspark",
)
def test_spark_script_master_and_worker_on_loopback(tmp_path):
    port, ui = free_port(), free_port()
    env = script_env(
        tmp_path,
        ADPRIOR_SPARK_PORT=str(port),
        ADPRIOR_SPARK_UI_PORT=str(ui),
        ADPRIOR_SPARK_WORKER_MEMORY="512m",
        ADPRIOR_SPARK_WORKER_CORES="1",
    )
    pids = []
    try:
        r = run("spark.sh", "start", env, timeout=150)
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"--master spark://127.0.0.1:{port}" in r.stdout
        pids = [int((tmp_path / "spark" / f).read_text()) for f in ("master.pid", "worker.pid")]
        assert all(alive(p) for p in pids)
        for p in (port, ui, ui + 1):  # master RPC, master UI, worker UI
            assert listeners(p) and all(_loopback(a) for a in listeners(p)), (p, listeners(p))
        assert listeners(6066) == [] or pids[0] not in _pids_on(6066)  # no REST submission server
        again = run("spark.sh", "start", env)  # idempotent: reports the running pair
        assert again.returncode == 0 and f"pid {pids[0]}" in again.stdout
        assert run("spark.sh", "status", env).returncode == 0
    finally:
        r = run("spark.sh", "stop", env, timeout=120)
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    assert not any(alive(p) for p in pids)
    assert run("spark.sh", "status", env).returncode == 3


def _loopback(addr: str) -> bool:
    return addr.strip("[]") in ("127.0.0.1", "::ffff:127.0.0.1")


def _pids_on(port: int) -> list[int]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    return [
        int(m)
        for line in out.splitlines()
        if line.split()[3].endswith(f":{port}")
        for m in re.findall(r"pid=(\d+)", line)
    ]


def _cmdline_pids(needle: str) -> list[int]:
    pids = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (p / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not (VENV / "bin" / "ray").exists(), reason="needs the venv's ray")
def test_ray_script_token_auth_and_own_stop(tmp_path):
    worker_ports = range(10002, 20000)  # Ray's default worker port range
    port, dash = free_port(worker_ports), free_port(worker_ports)
    temp = Path("/tmp") / f"adprior-ray-test-{os.getpid()}"
    env = script_env(
        tmp_path,
        ("ADPRIOR_BIND", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"),
        ADPRIOR_RAY_PORT=str(port),
        ADPRIOR_RAY_DASHBOARD_PORT=str(dash),
        ADPRIOR_RAY_NUM_CPUS="1",
        ADPRIOR_RAY_TEMP_DIR=str(temp),
    )
    try:
        r = run("ray.sh", "start", env, timeout=150)
        assert r.returncode == 0, r.stderr + r.stdout
        token = tmp_path / "ray" / "auth_token"
        assert f"--ray-address 127.0.0.1:{port}" in r.stdout
        assert "export RAY_AUTH_MODE=token" in r.stdout and f"RAY_AUTH_TOKEN_PATH={token}" in r.stdout
        assert oct(token.stat().st_mode & 0o777) == "0o600"
        assert token.read_text() not in r.stdout + r.stderr
        pid = int((tmp_path / "ray" / "ray.pid").read_text())
        assert run("ray.sh", "status", env).returncode == 0
        # a driver with the token runs a task on it
        drv = (
            f"import logging, ray; ray.init(address='127.0.0.1:{port}', log_to_driver=False, "
            "logging_level=logging.WARNING); print('ANSWER', ray.get(ray.remote(lambda: 42).remote()))"
        )
        denv = dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        d = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", drv],
            env=denv,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert "ANSWER 42" in d.stdout, d.stderr[-2000:]
    finally:
        r = run("ray.sh", "stop", env, timeout=150)
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    assert not alive(pid)
    assert _cmdline_pids(str(temp)) == []
    assert listeners(port) == []
    shutil.rmtree(temp, ignore_errors=True)
