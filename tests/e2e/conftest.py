"""End-to-end fixtures: Prefect's test server once per session, a fresh simulator per test.

Everything crosses real loopback HTTP: the flow's client talks to the simulator,
the simulator posts callbacks to the flow's receiver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.testing.utilities import prefect_test_harness

from stemcat.sim import SimConfig, SimServer

FAST = dict(rate_limit=200, rate_window_s=1.0, poll_initial_s=0.2, poll_max_s=0.5, job_timeout_s=60.0,
            batch_size=8, concurrency=4)


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def render_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered MP3s shared between tests (same seed, same songs): rendering is the slow part."""
    return tmp_path_factory.mktemp("sim-cache")


@pytest.fixture
def sim_config(render_cache: Path) -> SimConfig:
    return SimConfig(seed=11, processing_s=(0.1, 0.4), rate_limit=None, cache_dir=render_cache)


@pytest.fixture
def sim(sim_config: SimConfig) -> Iterator[SimServer]:
    with SimServer(sim_config, port=0) as server:
        yield server


def run_flow(manifest: Path, data_dir: Path, base_url: str, **overrides: Any) -> dict[str, Any]:
    """One flow run; its summary whether it ended Completed or Failed (see `run_flow_state` for the state)."""
    from stemcat.flows.separate import run_separation

    params = {**FAST, **overrides}
    return asyncio.run(run_separation(manifest=str(manifest), data_dir=str(data_dir), base_url=base_url, **params))


def run_flow_state(manifest: Path, data_dir: Path, base_url: str, **overrides: Any) -> Any:
    """One flow run's final Prefect state."""
    from stemcat.flows.separate import separate_manifest

    params = {**FAST, **overrides}
    return asyncio.run(separate_manifest(manifest=str(manifest), data_dir=str(data_dir), base_url=base_url,
                                         return_state=True, **params))
