"""What a flow's body runs inside: Prefect when there is a flow run, plain coroutines when there is not,
the run's log lines routed to its logs, and the resources a separation run holds open."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect.context import FlowRunContext
from prefect.logging.handlers import APILogHandler
from prefect.utilities.annotations import quote

from stemcat.catalog import Ledger, LedgerWriter
from stemcat.client import SunoClient, SunoError
from stemcat.services.callbacks import CallbackHub, CallbackReceiver, load_secret
from stemcat.tasks.context import RunAborted, RunContext, RunLease, RunLock, RunOptions
from stemcat.tasks.limits import make_limiter

log = logging.getLogger("stemcat.flows.separate")  # the run's lines keep the flow's logger name


def orchestrated() -> bool:
    """True inside a Prefect flow run; False when the flow's body runs bare (`separate_manifest.fn`)."""
    return FlowRunContext.get() is not None


async def call_task(step: Any, *args: Any) -> Any:
    """Run a task: as a Prefect task run inside a flow run, as a plain coroutine otherwise (no server)."""
    if orchestrated():
        return await step(*args)
    return await step.fn(*(a.unquote() if isinstance(a, quote) else a for a in args))


class _OneLineExpectedOutcomes(logging.Filter):
    """Expected outcomes (a refused key, a stopped run) are logged as one line, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RunAborted | SunoError):
            record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE = _OneLineExpectedOutcomes()


@contextmanager
def run_logging() -> Iterator[None]:
    """stemcat's own log lines (plan, milestones, warnings naming their job, summary) go to the run's logs."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        if _ONE_LINE not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_ONE_LINE)
    ours = logging.getLogger("stemcat")
    added = None
    if orchestrated() and not any(isinstance(h, APILogHandler) for h in ours.handlers):
        added = APILogHandler()
        ours.addHandler(added)
    if ours.level == logging.NOTSET or ours.level > logging.INFO:
        ours.setLevel(logging.INFO)
    try:
        yield
    finally:
        if added is not None:
            ours.removeHandler(added)


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@asynccontextmanager
async def run_resources(options: RunOptions, run_id: str) -> AsyncIterator[RunContext]:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.open(options.data_dir, options.ledger_url)
    writes = LedgerWriter(ledger.reopen(busy_timeout_s=0.0))
    secret = load_secret(options.data_dir)
    limiter = make_limiter(options)
    try:
        with RunLock(options.data_dir, run_id), RunLease(ledger, run_id, options.run_lease_s):
            async with SunoClient(base_url=options.base_url, limiter=limiter,
                                  max_download_connections=options.download_concurrency) as client, \
                    AsyncExitStack() as receiving:
                if options.callback_url:  # a long-lived receiver elsewhere stores callbacks in the ledger
                    callback_base, hub = options.callback_url, CallbackHub()
                else:  # served on this loop; stopped (its last callbacks stored) before the writer drains
                    receiver = await receiving.enter_async_context(CallbackReceiver(ledger, secret, writer=writes))
                    callback_base, hub = receiver.base_url, receiver.hub
                hub.bind(asyncio.get_running_loop())
                yield RunContext(run_id=run_id, options=options, ledger=ledger, client=client, secret=secret,
                                 callback_base=callback_base, hub=hub, writes=writes)
    finally:
        await writes.drain()
        try:
            await limiter.aclose()  # gives reserved slots back to runs sharing the key
        except Exception as error:  # a rate store gone away must not hide how the run ended
            log.warning("closing the rate limiter failed: %s", error)
        writes.close()
        ledger.close()
