"""Fixtures of the simulator tests: simulators started on demand with fast settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stemcat.sim import SimConfig, SimServer

from .simtest_support import SimFactory

# Fast defaults: short processing, no rate limit unless a test asks, quick callback retries.
FAST: dict[str, Any] = {
    "seed": 11,
    "processing_s": (0.05, 0.1),
    "rate_limit": None,
    "callback_retry_wait_s": 0.05,
    "callback_timeout_s": 2.0,
    "min_duration_s": 3.0,
    "max_duration_s": 4.0,
    "prerender": False,  # most tests never download; rendering on demand keeps the 2 cores free
}


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    """Start a simulator with FAST settings overridden by keyword arguments; stopped after the test."""
    started: list[SimServer] = []

    def factory(**overrides: Any) -> SimServer:
        sim = SimServer(SimConfig(**{**FAST, **overrides})).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("sim-cache")


@pytest.fixture(scope="module")
def sim(shared_cache: Any) -> Iterator[SimServer]:
    """One simulator per test module (default FAST config), for tests that do not change its settings."""
    with SimServer(SimConfig(**FAST, cache_dir=shared_cache)) as server:
        yield server
