"""The analysis worker pool: equal results, a killed worker costs one retry, nothing left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemcat.tasks.analysis.decode import JobRequest, decode_job
from stemcat.tasks.analysis.metrics import QualityThresholds
from stemcat.tasks.analysis.pool import AnalysisPool, WorkerDied

from . import pool_jobs

RATE = 22_050


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> JobRequest:
    root = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(4)
    stems = {name: 0.1 * rng.standard_normal((RATE * 3, 2)) for name in ("vocals", "drums", "bass")}
    paths = {}
    for name, signal_ in stems.items():
        paths[name] = root / f"{name}.flac"
        sf.write(paths[name], signal_, RATE)
    sf.write(root / "mix.flac", sum(stems.values()), RATE)
    return JobRequest(paths, root / "mix.flac", QualityThresholds(), block_frames=8_192)


def _children() -> set[int]:
    """Live child processes of this process (zombies excluded), read from /proc.

    Leaves out multiprocessing's resource tracker: one per interpreter, started with the first
    spawned process, it lives as long as the interpreter and belongs to no pool.
    """
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)  # noqa: SLF001
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z" and int(entry.name) != tracker:
            found.add(int(entry.name))
    return found


def _wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" != _state(pid)}
        if not alive:
            return set()
        time.sleep(0.05)
    return alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_results_equal_in_process_results_and_close_leaves_no_process(job: JobRequest) -> None:
    before = _children()
    pool = AnalysisPool(2)

    async def both() -> list:
        return await asyncio.gather(pool.run(decode_job, job), pool.run(decode_job, JobRequest(job.stems)))

    measured, verified = asyncio.run(both())
    assert measured == decode_job(job)
    assert verified == decode_job(JobRequest(job.stems)) and verified.metrics is None
    workers = {process.pid for process in pool.processes()}
    assert workers and workers <= _children() - before
    pool.close()
    assert not _wait_gone(workers) and _children() <= before


def test_a_worker_killed_mid_job_costs_one_retry_and_the_run_goes_on(job: JobRequest, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    with AnalysisPool(2) as pool:

        async def run() -> list:
            hanging = asyncio.create_task(pool.run(pool_jobs.decode_after_first_attempt_hangs, job, marker))
            others = [asyncio.create_task(pool.run(decode_job, job)) for _ in range(3)]
            while not marker.exists() or not marker.read_text():
                await asyncio.sleep(0.05)
            os.kill(int(marker.read_text()), signal.SIGKILL)
            return await asyncio.gather(hanging, *others)

        results = asyncio.run(run())
        expected = decode_job(job)
        assert all(result == expected for result in results)  # the killed job measured on its retry
        assert pool.restarts == 1
        with pytest.raises(WorkerDied):  # a job that kills its worker every time fails alone...
            pool.call(pool_jobs.die)
        assert pool.call(decode_job, job) == expected  # ...and the pool still works


def test_ctrl_c_leaves_no_worker_behind(job: JobRequest, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path[:0] = {sys.path!r}
        from pathlib import Path
        from stemcat.tasks.analysis.pool import shared_pool
        from tests.quality import pool_jobs

        async def main():
            pool = shared_pool(2)
            pids = await asyncio.gather(*(pool.run(pool_jobs.worker_pid) for _ in range(4)))
            Path({str(tmp_path / "pids")!r}).write_text(" ".join(str(p) for p in set(pids)))
            await pool.run(pool_jobs.decode_after_first_attempt_hangs, None, Path({str(tmp_path / "m")!r}))

        asyncio.run(main())
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    pids_file = tmp_path / "pids"
    deadline = time.monotonic() + 60
    while not (tmp_path / "m").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "m").exists(), "the child never started its long job"
    pids = {int(pid) for pid in pids_file.read_text().split()}
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) != 0
    assert not _wait_gone(pids)
