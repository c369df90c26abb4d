"""Prefect's cost per task run, measured against the benchmark's server, as JSON.

`python -m benchmarks.prefect_overhead --tasks 200 --out result.json`: one flow awaits that
many no-op async tasks one after another, another runs them all at once; the cost per task
run is their time over a flow that does the same awaits without tasks. This is what choosing
the task granularity trades against (the main flow runs one task run per batch of tracks,
two with the analysis, plus a handful per run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE


@task(cache_policy=NONE, retries=0)
async def noop(index: int) -> int:
    """Nothing, as a task run."""
    return index


async def bare(index: int) -> int:
    return index


@flow(log_prints=False)
async def sequential(n: int) -> float:
    started = time.perf_counter()
    for index in range(n):
        await noop(index)
    return time.perf_counter() - started


@flow(log_prints=False)
async def concurrent(n: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(noop(index) for index in range(n)))
    return time.perf_counter() - started


@flow(log_prints=False)
async def without_tasks(n: int) -> float:
    started = time.perf_counter()
    for index in range(n):
        await bare(index)
    return time.perf_counter() - started


async def measure(n: int) -> dict[str, float]:
    flow_started = time.perf_counter()
    empty = await without_tasks(n)
    flow_s = time.perf_counter() - flow_started - empty
    one_by_one = await sequential(n)
    all_at_once = await concurrent(n)
    return {
        "tasks": n,
        "flow_run_s": flow_s,
        "ms_per_task_sequential": (one_by_one - empty) / n * 1000,
        "ms_per_task_concurrent": (all_at_once - empty) / n * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    Path(args.out).write_text(json.dumps(asyncio.run(measure(args.tasks))))


if __name__ == "__main__":
    main()
