"""One paced process for the cross-process tests: free API calls through a shared budget.

`python -m tests.pacing.pacing_worker --store SPEC --base-url URL --requests N --out FILE`
writes, as JSON, when each call was admitted and how the calls ended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from stemcat.client import API_KEY_ENV, SunoClient, SunoError
from stemcat.client.ratelimit import SharedLimiter, open_admission_store
from stemcat.client.ratelimit.arrivals import current_admission


class RecordingLimiter(SharedLimiter):
    """Notes the wall-clock time and the store's ticket of every admission."""

    admissions: list[float]
    tickets: list[int]

    async def acquire(self) -> None:
        await super().acquire()
        self.admissions.append(time.time())
        admission = current_admission()
        self.tickets.append(-1 if admission is None else admission.ticket)


async def run(args: argparse.Namespace) -> dict[str, object]:
    store = open_admission_store(args.store, base_url=args.base_url, api_key=os.environ[API_KEY_ENV])
    limiter = RecordingLimiter(store, args.limit, args.window, safety=args.safety)
    limiter.admissions, limiter.tickets = [], []
    errors: list[str] = []
    pending = iter(range(args.requests))

    async def worker() -> None:
        for _ in pending:
            try:
                await client.credits()
            except SunoError as error:
                errors.append(type(error).__name__)

    Path(args.ready).touch()
    while not Path(args.go).exists():  # start together with the other process
        await asyncio.sleep(0.005)
    async with SunoClient(base_url=args.base_url, limiter=limiter, max_read_attempts=1) as client:
        await asyncio.gather(*(worker() for _ in range(8)))
    await limiter.aclose()
    return {"admissions": limiter.admissions, "tickets": limiter.tickets, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--safety", type=float, default=0.02)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--go", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
