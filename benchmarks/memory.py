"""This process's memory, from /proc (Linux).

`getrusage().ru_maxrss` is no good in a child process: Linux carries the parent's
high-water mark across fork and exec, so a small child reports its big parent's peak.
`VmHWM` is the peak of the process's own address space.
"""

from __future__ import annotations

import os

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB."""
    return _status_kb("VmHWM") / 1024


def current_rss_mb() -> float:
    """Resident set size now, MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE_MB
