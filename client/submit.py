"""The paid submit's bookkeeping: when it may be re-sent, and what a failed one leaves behind.

Kept apart from the request plumbing in `stemcat.client.client` because it is the one call
that costs money: the rules for re-sending it and for reporting "maybe accepted" are the
client's safety contract, and they read best on their own. `submit_once` turns one attempt's
failure into either a re-sendable refusal or `SubmitOutcomeUnknown`, keeping a `SubmitReceipt`
current for a caller that is stopped part-way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stemcat.client.endpoints import SUBMIT_PATH
from stemcat.client.errors import (
    Maintenance,
    ResponseFormatError,
    ServerError,
    SubmitOutcomeUnknown,
    SunoError,
    Throttled,
    TransportFailure,
)
from stemcat.client.models import parse_submitted_task_id

# Awaited once, right before a paid request leaves (see `SunoClient.submit`).
BeforeSend = Callable[[], Awaitable[None]]


@dataclass
class SubmitReceipt:
    """How far one paid submit got: kept current while `SunoClient.submit` runs, read when it raises.

    A run may be stopped (Ctrl-C, a worker cancelling it) while a submit waits for the limiter
    or out a Retry-After between attempts. Nothing is on the wire then, and when every answer
    so far said "not executed" (405/430/455, a connection never made) the API has not run it:
    `not_executed` tells the caller it may record the job as not submitted, whatever stopped it.
    """

    attempts: int = 0  # requests put on the wire
    in_flight: bool = False  # one of them is on the wire now, unanswered
    maybe_executed: bool = False  # an answer (or a broken exchange) that does not say "not executed"
    refusal: SunoError | None = None  # the latest "not executed" answer, if any

    @property
    def not_executed(self) -> bool:
        """No attempt can have been executed: none is in flight and none was answered ambiguously."""
        return not (self.in_flight or self.maybe_executed)


# Sends one submit attempt: (body, before_send, receipt) -> the answer's envelope.
SendSubmit = Callable[[dict[str, str], list[BeforeSend], SubmitReceipt], Awaitable[dict[str, Any]]]


def is_retryable_submit_error(error: BaseException) -> bool:
    """Only outcomes documented or proven as "not executed" may be re-sent."""
    if isinstance(error, TransportFailure):
        return not error.request_sent
    return isinstance(error, Throttled | Maintenance)


async def submit_once(
    send: SendSubmit, body: dict[str, str], before_send: list[BeforeSend], receipt: SubmitReceipt
) -> str:
    """One submit attempt: the new taskId, a re-sendable refusal, or `SubmitOutcomeUnknown`."""
    try:
        envelope = await send(body, before_send, receipt)
    except (Throttled, Maintenance) as exc:
        receipt.refusal = exc
        raise
    except TransportFailure as exc:
        if not exc.request_sent:
            receipt.refusal = exc
            raise
        receipt.maybe_executed = True
        raise unknown_submit(exc, "the connection failed after the request was sent") from None
    except ServerError as exc:
        receipt.maybe_executed = True
        raise unknown_submit(exc, f"the server answered {exc.code}") from None
    except ResponseFormatError as exc:
        receipt.maybe_executed = True
        raise unknown_submit(exc, "the answer could not be read") from None
    receipt.maybe_executed = True  # accepted, as far as the caller still has to find out
    try:
        return parse_submitted_task_id(envelope)
    except ResponseFormatError as exc:
        raise unknown_submit(exc, "the answer could not be read") from None


def unknown_submit(cause: SunoError, why: str) -> SubmitOutcomeUnknown:
    """The error for a submit that may or may not have been accepted."""
    return SubmitOutcomeUnknown(
        f"Submit may or may not have been accepted: {why} ({cause.detail})",
        cause=cause,
        code=cause.code,
        endpoint=SUBMIT_PATH,
    )
