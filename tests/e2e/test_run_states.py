"""A flow run's state and logs say what happened: Failed with the reason, no traceback for an expected outcome.

(The artifacts: tests/e2e/test_pipeline.py::test_each_run_publishes_its_summary_as_prefect_artifacts.)
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from stemcat.client import SunoError
from stemcat.exit_codes import ExitCode
from stemcat.flows.separate import summary_of
from stemcat.sim import FaultSpec, make_tracks_manifest
from stemcat.tasks.context import RunAborted

from .conftest import run_flow_state

pytestmark = pytest.mark.e2e


def _expected_tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records
            if r.exc_info and isinstance(r.exc_info[1], RunAborted | SunoError)]


def test_a_refused_key_fails_the_flow_run_with_the_reason_and_logs_no_traceback(sim, tmp_path, caplog):
    manifest = make_tracks_manifest(sim, 2, tmp_path / "m.csv", types=("separate_vocal",))
    sim.inject(FaultSpec(route="generate", code=401, times=-1))
    with caplog.at_level(logging.INFO):
        state = run_flow_state(manifest, tmp_path / "data", sim.base_url)
    assert state.is_failed()
    assert "401" in state.message or "nauthori" in state.message
    summary = asyncio.run(summary_of(state))
    assert summary["exit_code"] == ExitCode.UNAUTHORIZED and sim.ledger() == []
    assert _expected_tracebacks(caplog.records) == []
    assert any(r.name.startswith("stemcat") and r.getMessage().startswith("plan:") for r in caplog.records)

