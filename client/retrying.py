"""Which failures of a read or a download are retried, and how a retry is logged.

The paid submit has stricter rules of its own (`stemcat.client.submit`); these are the
generous ones for calls that are safe to repeat. `retrying` builds the tenacity loop that
every client call runs in, so the stop, wait, sleep and log settings live in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from stemcat.client.backoff import JitteredBackoff
from stemcat.client.errors import DownloadFailed, DownloadTruncated, ErrorPolicy, SunoError

logger = logging.getLogger("stemcat.client")

Sleep = Callable[[float], Awaitable[None]]

_RETRIED_POLICIES = frozenset({ErrorPolicy.RETRY, ErrorPolicy.PAUSE})


def is_retryable_read_error(error: BaseException) -> bool:
    return isinstance(error, SunoError) and error.policy in _RETRIED_POLICIES


def is_retryable_download_error(error: BaseException) -> bool:
    return isinstance(error, DownloadFailed | DownloadTruncated) and error.policy is ErrorPolicy.RETRY


def log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    delay = retry_state.next_action.sleep if retry_state.next_action is not None else 0.0
    logger.warning(
        "attempt %d failed (%s); retrying in %.2fs",
        retry_state.attempt_number,
        error if isinstance(error, SunoError) else type(error).__name__,
        delay,
    )


def retrying(
    should_retry: Callable[[BaseException], bool], *, max_attempts: int, backoff: JitteredBackoff, sleep: Sleep
) -> AsyncRetrying:
    """A retry loop: up to `max_attempts` tries, jittered back-off, re-raising the last failure."""
    return AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=backoff,
        retry=retry_if_exception(should_retry),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )
