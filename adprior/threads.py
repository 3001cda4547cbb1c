"""CPU threads sized to the cores actually free, with idle OpenMP threads that sleep (a shared machine).

torch (and vLLM's CPU build, through OpenMP) starts one compute thread per core. Next to another busy
process that is one thread too many: two threads time-slice one core, and OpenMP's default *active* wait
makes every idle worker spin at a barrier, so a matmul waits for its slowest, descheduled thread. The
nightly on 2 cores next to one busy process ran 3.6x slower than alone (issue 19). Two remedies:

* :func:`passive_wait`: ``OMP_WAIT_POLICY=PASSIVE`` (idle workers sleep); it must be in the environment
  before the OpenMP runtime starts, so the CLI sets it first thing and child processes (Ray actors, vLLM's
  engine core) inherit it. An explicit setting is kept.
* :func:`auto_threads`: the cores left free by the *other* processes, measured over a short window when a
  stage starts (``psutil``: the machine's busy share minus the job's own), rounded, at least 1 and at
  most ``cap``; :func:`configure` applies it to torch and to ``OMP_NUM_THREADS`` for children. An explicit
  thread count (a config field, or ``ADPRIOR_THREADS``) always wins.

"The job's own" is the whole process tree under the CLI process (:func:`mark_job` stores its pid in
``ADPRIOR_JOB_PID``, which Ray's daemons, actors, Spark's JVM and vLLM's engine inherit). Counting only
the measuring process was wrong inside a Ray actor: the driver, raylet and Spark starting next to it
looked like a busy neighbour, the actor took 1 thread on an idle 2-core machine, and the README nightly
ran at 0.224 users/s instead of 0.304.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV_THREADS = "ADPRIOR_THREADS"  # an explicit thread count for every stage (overrides the measurement)
ENV_JOB = "ADPRIOR_JOB_PID"  # the pid whose process tree is this job (set by the CLI, inherited)


def passive_wait() -> None:
    """Let idle OpenMP threads sleep instead of spinning (unless the environment already says otherwise)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def mark_job() -> None:
    """Make this process the root of the job's process tree (unless a parent job already set it)."""
    os.environ.setdefault(ENV_JOB, str(os.getpid()))


def job_processes() -> list:
    """The job's processes: the ``ADPRIOR_JOB_PID`` process (this one when unset or gone), its
    descendants, and this process."""
    import psutil

    me = psutil.Process()
    try:
        root = psutil.Process(int(os.environ.get(ENV_JOB, me.pid)))
    except (psutil.Error, ValueError):
        root = me
    procs = {p.pid: p for p in [root, me, *root.children(recursive=True)]}
    return list(procs.values())


def cpu_seconds(procs: list) -> dict[int, float]:
    """User + system CPU seconds used so far by each of ``procs`` still alive (pid -> seconds)."""
    import psutil

    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = t.user + t.system
    return out


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def busy_cores(interval: float = 0.5) -> float:
    """Cores kept busy by processes *outside this job* over ``interval`` seconds (the job's own
    process tree, :func:`job_processes`, excluded)."""
    import time

    import psutil

    procs = job_processes()
    before = cpu_seconds(procs)
    psutil.cpu_percent(None)
    start = time.monotonic()
    time.sleep(interval)
    total = psutil.cpu_percent(None)  # % of all cores, over the interval
    elapsed = time.monotonic() - start
    after = cpu_seconds(procs)
    ours = sum(after[pid] - before[pid] for pid in after if pid in before) / elapsed  # cores
    return max(0.0, total / 100 * (psutil.cpu_count() or 1) - ours)


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
    log.info("threads: %d (%d usable cores, %.2f busy outside this job)", n, cores, busy)
    return n


def configure(threads: int | None = None, cap: int | None = None) -> int:
    """Set torch's threads and ``OMP_NUM_THREADS`` (for child processes) to ``threads``, or to
    :func:`auto_threads` (at most ``cap``) when None; return the count."""
    n = int(threads) if threads else auto_threads(cap)
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
    return n
