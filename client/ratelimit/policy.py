"""The poll policy: which waiting request gets the next admission when polls and submits compete.

API calls made inside `polling()` are polls; every other call counts as a submit. When both
kinds wait, polls get at most `poll_share` of the admissions (stride scheduling); when only
one kind waits it gets the whole budget. Per-job poll cadence (back-off) is the caller's business.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from enum import StrEnum


class RequestClass(StrEnum):
    SUBMIT = "submit"  # and every call not marked as a poll
    POLL = "poll"


_request_class: ContextVar[RequestClass] = ContextVar("stemcat_request_class", default=RequestClass.SUBMIT)


@contextlib.contextmanager
def polling() -> Iterator[None]:
    """Mark the API calls made inside as polls."""
    token = _request_class.set(RequestClass.POLL)
    try:
        yield
    finally:
        _request_class.reset(token)


def current_request_class() -> RequestClass:
    """The kind of the API call the current task is about to make."""
    return _request_class.get()


class PollPolicy:
    """Stride scheduling between the two request classes, polls weighted `poll_share`."""

    def __init__(self, poll_share: float) -> None:
        if not 0.0 <= poll_share <= 1.0:
            raise ValueError("poll_share must be between 0 and 1")
        self._weights = {RequestClass.SUBMIT: 1.0 - poll_share, RequestClass.POLL: poll_share}
        self._passes = dict.fromkeys(RequestClass, 0.0)

    def pick(self, waiting: Sequence[RequestClass]) -> RequestClass:
        """The class (among those with waiters) that gets the next admission."""
        chosen = waiting[0] if len(waiting) == 1 else min(waiting, key=self._stride_key)
        weight = self._weights[chosen]
        if weight > 0:
            self._passes[chosen] += 1.0 / weight
        # An idle class must not bank credit while the other uses the budget.
        for other in RequestClass:
            if other is not chosen and other not in waiting:
                self._passes[other] = max(self._passes[other], self._passes[chosen])
        return chosen

    def _stride_key(self, request_class: RequestClass) -> tuple[float, bool]:
        pass_value = self._passes[request_class] if self._weights[request_class] > 0 else math.inf
        return pass_value, request_class is not RequestClass.SUBMIT  # ties go to submits
