"""Thread sizing on a shared machine (adprior.threads): free cores, explicit counts, a real busy neighbour."""

from __future__ import annotations

import os
import subprocess
import sys

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


@pytest.mark.skipif(threads.usable_cores() < 2, reason="needs 2 cores")
def test_a_busy_neighbour_takes_its_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    cores = threads.usable_cores()
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores - 1)
    ]  # every core but one kept busy by another process
    try:
        busy = threads.busy_cores(interval=1.0)
        assert busy >= cores - 1 - 0.3
        assert threads.auto_threads(interval=1.0) == 1
    finally:
        for p in spinners:
            p.kill()
            p.wait()
