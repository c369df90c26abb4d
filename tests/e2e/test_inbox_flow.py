"""The inbox flow against the simulator: only manifests with work left run, done ones cost no request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stemcat.flows.inbox import separate_inbox
from stemcat.sim import SimServer, make_tracks_manifest

from .conftest import FAST

pytestmark = pytest.mark.e2e


def run_inbox(inbox: Path, data_dir: Path, base_url: str, **overrides: Any):
    params = {**FAST, **overrides}
    return asyncio.run(separate_inbox(inbox=str(inbox), data_dir=str(data_dir), base_url=base_url,
                                      return_state=True, **params))


def _outcomes(result: dict) -> dict[str, str]:
    return {Path(row["manifest"]).name: row["outcome"] for row in result["manifests"]}


def _requests(sim: SimServer) -> dict[str, int]:
    return dict(sim.stats().requests_by_route)


def test_each_run_takes_new_manifests_and_done_ones_cost_nothing(sim: SimServer, tmp_path: Path) -> None:
    inbox, data_dir = tmp_path / "inbox", tmp_path / "data"
    make_tracks_manifest(sim, 2, inbox / "a.csv", types=("separate_vocal",))
    make_tracks_manifest(sim, 1, inbox / "b.jsonl", types=("separate_vocal",))
    first = run_inbox(inbox, data_dir, sim.base_url)
    assert first.is_completed(), first.message
    assert _outcomes(first.result()) == {"a.csv": "ran", "b.jsonl": "ran"}
    assert first.result()["credits_committed"] == 3

    make_tracks_manifest(sim, 1, inbox / "c.csv", types=("separate_vocal",))  # dropped in between runs
    second = run_inbox(inbox, data_dir, sim.base_url)
    assert second.is_completed(), second.message
    assert _outcomes(second.result()) == {"a.csv": "done", "b.jsonl": "done", "c.csv": "ran"}

    before = _requests(sim)
    third = run_inbox(inbox, data_dir, sim.base_url)
    assert third.is_completed(), third.message
    assert set(_outcomes(third.result()).values()) == {"done"}
    assert _requests(sim) == before, "a done manifest made a request (not even a balance read is allowed)"


def test_failures_fail_the_run_and_name_each_manifest(sim: SimServer, tmp_path: Path) -> None:
    inbox, data_dir = tmp_path / "inbox", tmp_path / "data"
    make_tracks_manifest(sim, 1, inbox / "ok.csv", types=("separate_vocal",))
    make_tracks_manifest(sim, 1, inbox / "pricey.csv", types=("split_stem",))
    (inbox / "broken.csv").write_text("title\nno task id column\n")
    sim.set_balance(1)  # pays for ok.csv's one vocal separation, not for pricey.csv's split_stem
    state = run_inbox(inbox, data_dir, sim.base_url)
    assert state.is_failed()
    assert _outcomes(state.result(raise_on_failure=False)) == {"broken.csv": "failed", "ok.csv": "ran",
                                                                "pricey.csv": "failed"}
    assert state.message.startswith("2 of 3 manifests not finished")
    assert "broken.csv: failed (exit 2)" in state.message and "pricey.csv: failed (exit 3)" in state.message


def test_max_credits_caps_the_whole_run(sim: SimServer, tmp_path: Path) -> None:
    inbox, data_dir = tmp_path / "inbox", tmp_path / "data"
    make_tracks_manifest(sim, 1, inbox / "1.csv", types=("split_stem",))
    make_tracks_manifest(sim, 1, inbox / "2.csv", types=("split_stem",))
    state = run_inbox(inbox, data_dir, sim.base_url, max_credits=5)
    assert state.is_failed()
    assert _outcomes(state.result(raise_on_failure=False)) == {"1.csv": "ran", "2.csv": "deferred"}
    assert "2.csv: deferred" in state.message and sim.balance() == 10_000 - 5
