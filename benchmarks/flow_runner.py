"""Run the main flow once in this process and report its wall time and memory, as JSON.

`python -m benchmarks.flow_runner --params params.json --out result.json`

The clock starts when the flow is called (imports excluded, reported apart); peak RSS is this
process's own high-water mark, and RSS is sampled through the run so growth can be seen.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.memory import current_rss_mb, peak_rss_mb


class RssSampler:
    """Samples this process's RSS on a thread: (seconds since start, MB)."""

    def __init__(self, every_s: float = 0.25) -> None:
        self.samples: list[tuple[float, float]] = []
        self._every_s = every_s
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.samples.append((time.perf_counter() - self._started, current_rss_mb()))


def run(params: dict[str, Any], *, profile: Path | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    from stemcat.flows.separate import run_separation

    imported = time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    with RssSampler() as sampler:
        if profiler is not None:
            profiler.enable()
        summary = asyncio.run(run_separation(**params))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
    finished = time.perf_counter()
    return {
        "import_s": imported - started,
        "wall_s": finished - imported,
        "peak_rss_mb": peak_rss_mb(),
        "rss_samples": sampler.samples,
        "exit_code": summary["exit_code"],
        "counts": summary["counts"],
        "plan": summary["plan"],
        "error": summary.get("error"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="JSON file of separate_manifest's parameters")
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", type=Path, help="also write cProfile stats of the main thread here")
    args = parser.parse_args()
    params = json.loads(Path(args.params).read_text())
    Path(args.out).write_text(json.dumps(run(params, profile=args.profile)))


if __name__ == "__main__":
    main()
