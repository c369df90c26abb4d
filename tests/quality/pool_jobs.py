"""Functions the pool tests run in worker processes (importable by a spawned interpreter)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from stemcat.tasks.analysis.decode import JobDecode, JobRequest, decode_job


def decode_after_first_attempt_hangs(request: JobRequest, marker: Path) -> JobDecode:
    """First call: leave the worker's pid in ``marker`` and hang (the test kills it); later calls decode."""
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(60)
    return decode_job(request)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def worker_pid() -> int:
    return os.getpid()
