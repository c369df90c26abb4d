"""Simulator set-ups of the benchmark scenarios, the render cache, and sampling the simulator's counters.

Songs are deterministic from the seed, so every simulator of a scenario (the flow's, the
baseline's, the warm-up's) names the same tracks and reuses the same rendered files.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from stemcat.sim import SimConfig, SimServer, make_tracks_manifest
from stemcat.sim.render import BACKGROUND
from stemcat.sim.stems import stems_of

PLENTY_OF_CREDITS = 10**9


def small_songs(cache_dir: Path, *, rate_limit: int | None, rate_window_s: float = 10.0) -> SimConfig:
    """One-second 8 kHz songs that finish in 50–200 ms: the HTTP work dominates, not audio."""
    return SimConfig(
        seed=101, sample_rate=8000, channels=1, min_duration_s=1.0, max_duration_s=1.0, processing_s=(0.05, 0.2),
        initial_credits=PLENTY_OF_CREDITS, rate_limit=rate_limit, rate_window_s=rate_window_s,
        callback_attempts=1, cache_dir=cache_dir / "sim", render_workers=2,
    )


def big_songs(cache_dir: Path, *, seconds: float) -> SimConfig:
    """CD-quality stereo songs: files of a few MB, for download throughput."""
    return SimConfig(
        seed=202, sample_rate=44100, channels=2, min_duration_s=seconds, max_duration_s=seconds,
        processing_s=(0.05, 0.1), initial_credits=PLENTY_OF_CREDITS, rate_limit=None, callback_attempts=1,
        cache_dir=cache_dir / "sim", render_workers=2,
    )


def warm_render_cache(config: SimConfig, tracks: int) -> float:
    """Render the separate_vocal stems of the first `tracks` songs into the cache; returns seconds spent."""
    started = time.perf_counter()
    with SimServer(config, port=0) as sim:
        renderer = sim.runtime.renderer
        futures = [renderer.request(track.audio_id, name, priority=BACKGROUND)
                   for track in sim.create_tracks(tracks) for name in stems_of("separate_vocal")]
        wait(futures)
        for future in futures:
            future.result()
    return time.perf_counter() - started


def write_manifest(sim: SimServer, tracks: int, path: Path) -> Path:
    """A separate_vocal manifest (with audio ids) of the simulator's first `tracks` songs."""
    return make_tracks_manifest(sim, tracks, path, types=("separate_vocal",))


@dataclass(frozen=True)
class CounterSample:
    """The simulator's request counters at one moment."""

    at: float  # time.monotonic()
    api_requests: int
    submits: int
    polls: int
    refused_430: int


def api_counters(sim: SimServer) -> CounterSample:
    stats = sim.stats()
    routes = stats.requests_by_route
    api = sum(routes.get(name, 0) for name in ("generate", "record_info", "credit", "generation"))
    by_route_status = stats.requests_by_route_and_status
    accepted_submits = by_route_status.get("generate", {}).get("200", 0)
    return CounterSample(time.monotonic(), api, accepted_submits, routes.get("record_info", 0), stats.rate_limited)


class CounterSampler:
    """Samples `api_counters` on a thread, so a rate can be computed over any interval afterwards."""

    def __init__(self, sim: SimServer, every_s: float = 0.5) -> None:
        self.samples: list[CounterSample] = []
        self._sim = sim
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-counters", daemon=True)

    def __enter__(self) -> Self:
        self.samples.append(api_counters(self._sim))
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(api_counters(self._sim))

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.samples.append(api_counters(self._sim))
