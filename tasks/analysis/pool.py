"""Worker processes for the CPU-bound part of the analysis: decoding and measuring audio.

The event loop only submits and awaits; every decode runs in a ``ProcessPoolExecutor`` of
``workers`` processes (default: one per core) started with the ``spawn`` method (forking a
process that already runs threads and an event loop is unsafe). At most ``2 x workers`` jobs are
submitted at once, the rest wait on the loop, so memory does not grow with the jobs in flight.

A worker that dies (killed, out of memory) breaks the whole executor: every pending job raises
``BrokenProcessPool``. The pool then starts a fresh executor and submits each of those jobs once
more; a job whose second attempt also loses its worker raises ``WorkerDied`` (that job fails, the
run goes on). Workers ignore SIGINT (Ctrl-C is the parent's to handle), exit on their own within
half a second of the parent dying, and ``close`` (called at exit too) terminates any still
running, so no process is left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

JOBS_PER_WORKER = 2
_PARENT_POLL_S = 0.5


class WorkerDied(Exception):
    """A job lost its worker process twice (killed or out of memory); the job fails, the run goes on."""


_configured_workers: int | None = None


def set_default_workers(workers: int | None) -> None:
    """Set the process's pool size for callers that name none (the CLI's ``--analysis-workers``)."""
    global _configured_workers  # noqa: PLW0603 - one process-wide setting, like the progress reporter
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    _configured_workers = workers


def default_workers() -> int:
    """The configured pool size, else one worker per core this process may run on."""
    if _configured_workers is not None:
        return _configured_workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    # A parent killed with SIGKILL runs no cleanup: the worker notices it was re-parented and exits.
    # (PR_SET_PDEATHSIG would fire when the parent *thread* that spawned the worker ends.)
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(0)


class AnalysisPool:
    """A process pool that survives a dead worker, bounded on the submitting side."""

    def __init__(self, workers: int | None = None, *, start_method: str = "spawn") -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        self.workers = workers or default_workers()
        self._context = multiprocessing.get_context(start_method)
        self._executor: ProcessPoolExecutor | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._closed = False
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self.restarts = 0
        _LIVE.add(self)

    def _current(self) -> tuple[ProcessPoolExecutor, int]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the analysis pool is closed")
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=self._context, initializer=_worker_init
                )
            return self._executor, self._generation

    def _replace(self, generation: int) -> None:
        """Drop a broken executor (once, however many of its jobs notice)."""
        with self._lock:
            if generation != self._generation or self._executor is None:
                return
            broken, self._executor = self._executor, None
            self._generation += 1
            self.restarts += 1
        _stop(broken)

    def _slots_for_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.workers * JOBS_PER_WORKER)
        return slots

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker process (``fn`` and its arguments must pickle)."""
        async with self._slots_for_loop():
            lost = 0
            while True:
                executor, generation = self._current()
                try:
                    future = executor.submit(fn, *args)
                except (BrokenProcessPool, RuntimeError):  # broken, or replaced since we looked
                    self._replace(generation)
                    continue
                try:
                    return await asyncio.wrap_future(future)
                except BrokenProcessPool as error:
                    self._replace(generation)
                    lost += 1
                    if lost == 2:
                        raise WorkerDied(f"an analysis worker died twice on this job ({error})") from error
                    log.warning("an analysis worker died; retrying its jobs once in a fresh pool")

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking ``run`` for code outside an event loop (benchmarks, scripts)."""
        for attempt in (1, 2):
            executor, generation = self._current()
            try:
                return executor.submit(fn, *args).result()
            except BrokenProcessPool as error:
                self._replace(generation)
                if attempt == 2:
                    raise WorkerDied(f"an analysis worker died twice on this job ({error})") from error
        raise WorkerDied("unreachable")  # pragma: no cover

    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        """The worker processes alive now (for tests and diagnostics)."""
        executor = self._executor
        if executor is None:
            return []
        return [p for p in list(getattr(executor, "_processes", {}).values()) if p.is_alive()]

    def close(self) -> None:
        """Stop every worker (a running job is abandoned); the pool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            _stop(executor)

    def __enter__(self) -> AnalysisPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stop(executor: ProcessPoolExecutor) -> None:
    processes = list(getattr(executor, "_processes", {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


_LIVE: weakref.WeakSet[AnalysisPool] = weakref.WeakSet()
_SHARED: dict[int, AnalysisPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(workers: int | None = None) -> AnalysisPool:
    """The process's pool of ``workers`` processes (a run's tasks share it); closed at exit."""
    size = workers or default_workers()
    with _SHARED_LOCK:
        pool = _SHARED.get(size)
        if pool is None:
            pool = _SHARED[size] = AnalysisPool(size)
        return pool


def close_shared_pools() -> None:
    """Stop every shared pool's workers (at exit, and after a run)."""
    with _SHARED_LOCK:
        pools = list(_SHARED.values())
        _SHARED.clear()
    for pool in pools:
        pool.close()


def _close_all_pools() -> None:
    close_shared_pools()
    for pool in list(_LIVE):
        pool.close()


# At interpreter exit (Ctrl-C included) concurrent.futures joins each executor's manager thread,
# which waits for the jobs still running: a long decode would hold the exit, and a hung one forever.
# Registered the same way (and after it, so it runs first), this terminates the workers instead.
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_close_all_pools)
else:  # pragma: no cover - other interpreters
    atexit.register(_close_all_pools)
