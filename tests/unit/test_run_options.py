"""Run options that shape a run's use of the key's budget: validation and what reaches the limiter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from stemcat.client.ratelimit import polling
from stemcat.tasks.context import RunOptions
from stemcat.tasks.limits import make_limiter


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
