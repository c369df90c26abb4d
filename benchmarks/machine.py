"""A one-line description of the machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def describe_machine() -> str:
    """CPU, cores, memory, OS, Python and the versions that matter to the numbers."""
    memory = _memory_gib()
    parts = [
        f"{_cpu_model()}, {os.cpu_count()} cores",
        f"{memory:.0f} GiB RAM" if memory else "RAM unknown",
        f"{platform.system()} {platform.release()}",
        f"Python {sys.version.split()[0]}",
        f"prefect {_version('prefect')}, httpx {_version('httpx')}, duckdb {_version('duckdb')}",
    ]
    return "; ".join(parts)
