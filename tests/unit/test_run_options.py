"""Run options that shape a run's use of the key's budget: validation and what reaches the limiter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from stemcat.client.ratelimit import polling
from stemcat.tasks.context import RunOptions
from stemcat.tasks.limits import make_limiter
from tests.servers.ledgers import LedgerTarget


def _options(tmp_path: Path, **overrides: object) -> RunOptions:
    return RunOptions(data_dir=tmp_path, base_url="http://127.0.0.1:9", rate_store="memory", **overrides)


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_poll_share_outside_0_to_1_is_refused(tmp_path: Path, share: float) -> None:
    with pytest.raises(ValidationError, match="poll_share"):
        _options(tmp_path, poll_share=share)


@pytest.mark.parametrize("share", [0.25, 0.75])
def test_the_poll_share_of_a_run_decides_who_goes_first_when_both_wait(tmp_path: Path, share: float) -> None:
    async def admitted_order() -> list[str]:
        limiter = make_limiter(_options(tmp_path, rate_limit=400, rate_window_s=1.0, poll_share=share))
        order: list[str] = []

        async def one(kind: str) -> None:
            if kind == "poll":
                with polling():
                    await limiter.acquire()
            else:
                await limiter.acquire()
            order.append(kind)

        try:
            await asyncio.gather(*(one(kind) for _ in range(40) for kind in ("poll", "submit")))
        finally:
            await limiter.aclose()
        return order

    order = asyncio.run(admitted_order())
    first = order[:40]  # both kinds were waiting throughout these admissions
    assert first.count("poll") == pytest.approx(40 * share, abs=3)


async def test_a_run_holds_its_lease_for_run_lease_s(ledger_target: LedgerTarget, tmp_path: Path) -> None:
    from stemcat.flows.separate import run_separation
    from stemcat.sim import SimConfig, SimServer, make_tracks_manifest

    with SimServer(SimConfig(seed=11, rate_limit=None, prerender=False)).start() as sim:
        manifest = make_tracks_manifest(sim, 1, tmp_path / "m.csv", types=("separate_vocal",))
        # A dry run pays nothing but records its run, leased like any other (the bare flow body: no server).
        summary = await run_separation(orchestrate=False, manifest=str(manifest), data_dir=str(ledger_target.data_dir),
                                       base_url=sim.base_url, ledger_url=ledger_target.url, dry_run=True,
                                       run_lease_s=5.0)
    assert summary["exit_code"] == 0, summary
    ((started, lease_end),) = ledger_target.query("SELECT started_at, lease_expires_at FROM runs")
    assert 4.9 < lease_end - started < 10.0  # the default is 60 s (SQLite's clock has millisecond steps)
