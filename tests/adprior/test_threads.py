"""Thread sizing on a shared machine (adprior.threads): free cores, explicit counts, a real busy neighbour."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from adprior import threads


def test_free_cores_rounds_and_keeps_one() -> None:
    assert threads.free_cores(2, 0.1) == 2
    assert threads.free_cores(2, 0.95) == 1  # one other busy process on 2 cores: one thread
    assert threads.free_cores(2, 2.0) == 1  # never zero
    assert threads.free_cores(16, 3.4) == 13


def test_explicit_counts_win(monkeypatch: pytest.MonkeyPatch) -> None:
    old = torch.get_num_threads()
    try:
        assert threads.configure(1) == 1 and torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        monkeypatch.setenv(threads.ENV_THREADS, "3")
        assert threads.auto_threads(cap=8) == 3
    finally:
        torch.set_num_threads(old)


def test_passive_wait_keeps_an_explicit_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def _orphan_spinner() -> int:
    """Start a busy process that is *not* in this job's tree (the shell that starts it exits, so it is
    reparented): a real neighbour. Returns its pid."""
    out = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(threads.usable_cores() < 2, reason="needs 2 cores")
def test_a_busy_neighbour_takes_its_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    monkeypatch.delenv(threads.ENV_JOB, raising=False)
    cores = threads.usable_cores()
    spinners = [_orphan_spinner() for _ in range(cores - 1)]  # every core but one busy outside the job
    try:
        busy = threads.busy_cores(interval=1.0)
        assert busy >= cores - 1 - 0.3
        assert threads.auto_threads(interval=1.0) == 1
    finally:
        for pid in spinners:
            os.kill(pid, signal.SIGKILL)


def test_the_jobs_own_processes_are_not_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy child of the job (a Ray actor, Spark's JVM) is counted as the job's own CPU time."""
    monkeypatch.setenv(threads.ENV_JOB, str(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        procs = threads.job_processes()
        assert child.pid in {p.pid for p in procs} and os.getpid() in {p.pid for p in procs}
        before = threads.cpu_seconds(procs)
        time.sleep(1.0)
        after = threads.cpu_seconds(procs)
        assert after[child.pid] - before[child.pid] >= 0.3  # its CPU time is the job's, subtracted
    finally:
        child.kill()
        child.wait()


def test_mark_job_keeps_a_parent_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_JOB, raising=False)
    threads.mark_job()
    assert os.environ[threads.ENV_JOB] == str(os.getpid())
    monkeypatch.setenv(threads.ENV_JOB, "1")
    threads.mark_job()
    assert os.environ[threads.ENV_JOB] == "1"
