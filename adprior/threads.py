"""CPU threads sized to the cores actually free, with idle OpenMP threads that sleep (a shared machine).

torch (and vLLM's CPU build, through OpenMP) starts one compute thread per core. Next to another busy
process that is one thread too many: two threads time-slice one core, and OpenMP's default *active* wait
makes every idle worker spin at a barrier, so a matmul waits for its slowest, descheduled thread. The
nightly on 2 cores next to one busy process ran 3.6x slower than alone (issue 19). Two remedies:

* :func:`passive_wait`: ``OMP_WAIT_POLICY=PASSIVE`` (idle workers sleep); it must be in the environment
  before the OpenMP runtime starts, so the CLI sets it first thing and child processes (Ray actors, vLLM's
  engine core) inherit it. An explicit setting is kept.
* :func:`auto_threads`: the cores left free by the *other* processes, measured over a short window when a
  stage starts (``psutil``: the machine's busy share minus this process's own), rounded, at least 1 and at
  most ``cap``; :func:`configure` applies it to torch and to ``OMP_NUM_THREADS`` for children. An explicit
  thread count (a config field, or ``ADPRIOR_THREADS``) always wins.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV_THREADS = "ADPRIOR_THREADS"  # an explicit thread count for every stage (overrides the measurement)


def passive_wait() -> None:
    """Let idle OpenMP threads sleep instead of spinning (unless the environment already says otherwise)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def busy_cores(interval: float = 0.5) -> float:
    """Cores kept busy by *other* processes over ``interval`` seconds (this process's own use excluded)."""
    import psutil

    me = psutil.Process()
    me.cpu_percent(None)
    total = psutil.cpu_percent(interval=interval)  # % of all cores, over the interval
    mine = me.cpu_percent(None)  # % of one core, over the same interval
    return max(0.0, total / 100 * (psutil.cpu_count() or 1) - mine / 100)


def free_cores(cores: int, busy: float) -> int:
    """``cores`` minus ``busy``, rounded to the nearest whole core, at least 1."""
    return max(1, int(cores - busy + 0.5))


def auto_threads(cap: int | None = None, interval: float = 0.5) -> int:
    """The thread count for a compute stage starting now: ``ADPRIOR_THREADS`` if set, else the free cores
    (:func:`free_cores` of :func:`usable_cores` and :func:`busy_cores`), at most ``cap``."""
    explicit = os.environ.get(ENV_THREADS)
    if explicit:
        return max(1, int(explicit))
    cores = usable_cores()
    busy = busy_cores(interval)
    n = free_cores(cores, busy)
    if cap is not None:
        n = max(1, min(n, int(cap)))
    log.info("threads: %d (%d usable cores, %.2f busy with other processes)", n, cores, busy)
    return n


def configure(threads: int | None = None, cap: int | None = None) -> int:
    """Set torch's threads and ``OMP_NUM_THREADS`` (for child processes) to ``threads``, or to
    :func:`auto_threads` (at most ``cap``) when None; return the count."""
    n = int(threads) if threads else auto_threads(cap)
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
    return n
