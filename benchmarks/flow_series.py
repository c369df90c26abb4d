"""Run several `separate_manifest` runs one after another in this process; report each as JSON.

`python -m benchmarks.flow_series --params runs.json --out results.json` (`runs.json`: a list of
parameter dicts). Imports are paid once. Per run: wall time, the run summary's API requests (by
kind and per finished job), and CPU-seconds over the run of this process (every thread: the
event loop, its worker threads, the callback receiver) and of its child processes (the analysis
pool's workers: the shared pool is closed after each run, so its workers are reaped and counted).
The simulator runs elsewhere (in the benchmark's own process), so none of its CPU is in here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_series(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    started = time.perf_counter()
    from stemcat.flows.separate import separate_manifest
    from stemcat.tasks.analysis.pool import close_shared_pools

    import_s = time.perf_counter() - started
    results = []
    for params in runs:
        self_before, children_before = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        summary = asyncio.run(separate_manifest(**params))
        wall_s = time.perf_counter() - began
        close_shared_pools()
        results.append({
            "import_s": import_s,
            "wall_s": wall_s,
            "cpu_self_s": _cpu(resource.RUSAGE_SELF) - self_before,
            "cpu_children_s": _cpu(resource.RUSAGE_CHILDREN) - children_before,
            "exit_code": summary["exit_code"],
            "counts": summary["counts"],
            "requests": summary.get("requests", {}),
            "jobs_finished": summary.get("jobs_finished", 0),
            "requests_per_job": summary.get("requests_per_job"),
            "error": summary.get("error"),
        })
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="JSON file: a list of separate_manifest parameter dicts")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = json.loads(Path(args.params).read_text())
    Path(args.out).write_text(json.dumps({"runs": run_series(runs)}))


if __name__ == "__main__":
    main()
