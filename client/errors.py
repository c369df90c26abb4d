"""Errors raised by the Suno client, each carrying the policy a caller should apply.

Hierarchy::

    SunoError                           policy         code
    ├── ConfigurationError              RUN            (no API key, bad base URL)
    ├── InvalidRequest                  ITEM           400
    ├── Unauthorized                    RUN            401
    ├── EndpointNotFound                ITEM           404
    ├── Throttled                       RETRY
    │   ├── RateLimited                 RETRY          405
    │   └── TooFrequent                 RETRY          430
    ├── PayloadTooLarge                 ITEM           413
    ├── InsufficientCredits             STOP_SUBMITS   429
    ├── SourceDownloadFailed            ITEM           451
    ├── Maintenance                     PAUSE          455
    ├── ServerError                     RETRY          500 and other 5xx
    ├── UnexpectedStatus                ITEM           any other code
    ├── TransportFailure                RETRY          (network errors after retries)
    │   └── RateStoreUnavailable        RETRY          (the key's rate store failed; nothing was sent)
    ├── ResponseFormatError             ITEM           (a body that is not the documented shape)
    ├── SubmitOutcomeUnknown            ITEM           (a paid submit that may or may not have run)
    ├── GaveUpWaiting                   ITEM           (a read that would have waited longer than allowed)
    └── DownloadError                                  (stem file downloads)
        ├── UnsafeURL                   ITEM
        ├── DownloadTooLarge            ITEM
        ├── DownloadTruncated           RETRY          (partial file kept for resuming)
        ├── DownloadExpired             ITEM           403/404/410 on a stem URL
        └── DownloadFailed              RETRY

Messages name the endpoint by path (or a masked URL) and say what to do. They never
contain the API key; URLs in them are masked.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorPolicy(StrEnum):
    """What the caller should do about an error."""

    RETRY = "retry"  # back off and retry; 405/430 also slow the whole run
    PAUSE = "pause"  # 455: pause the run and retry later
    ITEM = "item"  # fail this item, do not retry
    STOP_SUBMITS = "stop_submits"  # 429: stop paying; finish polls and downloads
    RUN = "run"  # 401: stop the whole run


class SunoError(Exception):
    """Base of every client error."""

    policy: ErrorPolicy = ErrorPolicy.ITEM
    advice: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        endpoint: str = "",
        retry_after: float | None = None,
        policy: ErrorPolicy | None = None,
    ) -> None:
        self.code = code
        self.endpoint = endpoint
        self.retry_after = retry_after
        if policy is not None:
            self.policy = policy
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"{self.detail} (at {self.endpoint})" if self.endpoint else self.detail
        return f"{text}. {self.advice}." if self.advice else text

    def __reduce__(self) -> tuple[object, ...]:
        # The default pickling re-calls __init__ with the rendered text; Prefect pickles failures.
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[SunoError], state: dict[str, object]) -> SunoError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._render())
    return error


class ConfigurationError(SunoError):
    policy = ErrorPolicy.RUN
    advice = "Fix the configuration (SUNO_API_KEY, SUNO_BASE_URL) and start the run again"


class InvalidRequest(SunoError):
    policy = ErrorPolicy.ITEM
    advice = "The API rejected the parameters; fail this item and record why, do not retry"


class Unauthorized(SunoError):
    policy = ErrorPolicy.RUN
    advice = "The API key was refused; stop the run and check SUNO_API_KEY"


class EndpointNotFound(SunoError):
    policy = ErrorPolicy.ITEM
    advice = "Wrong path or method: check SUNO_BASE_URL; do not retry"


class Throttled(SunoError):
    """The API refused the call for its rate (the call was not executed)."""

    policy = ErrorPolicy.RETRY
    advice = "The call was not executed; back off, slow the whole run down and retry"


class RateLimited(Throttled):
    pass


class TooFrequent(Throttled):
    pass


class PayloadTooLarge(SunoError):
    policy = ErrorPolicy.ITEM
    advice = "The request is too long; fail this item, do not retry"


class InsufficientCredits(SunoError):
    policy = ErrorPolicy.STOP_SUBMITS
    advice = "Out of credits: stop submitting, finish polls and downloads already paid for"


class SourceDownloadFailed(SunoError):
    policy = ErrorPolicy.ITEM
    advice = "The service could not fetch the source audio; fail this item (a retry may be charged again)"


class Maintenance(SunoError):
    policy = ErrorPolicy.PAUSE
    advice = "The API is under maintenance; pause the run and retry later"


class ServerError(SunoError):
    policy = ErrorPolicy.RETRY
    advice = "Server error; reads may be retried with back-off"


class UnexpectedStatus(SunoError):
    policy = ErrorPolicy.ITEM
    advice = "An undocumented code; fail this item and report it"


class TransportFailure(SunoError):
    """The network failed; `request_sent` says whether the request could have reached the server."""

    policy = ErrorPolicy.RETRY
    advice = "Network failure after retries; retry later"

    def __init__(
        self,
        message: str,
        *,
        request_sent: bool = True,
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.request_sent = request_sent
        super().__init__(message, endpoint=endpoint, retry_after=retry_after)


class RateStoreUnavailable(TransportFailure):
    """The key's shared rate budget (SQLite file or PostgreSQL) could not be reached; nothing was sent."""

    advice = "The rate store (SQLite file or PostgreSQL) failed; nothing was sent, retry later"

    def __init__(self, message: str, *, endpoint: str = "rate store") -> None:
        super().__init__(message, request_sent=False, endpoint=endpoint)


class ResponseFormatError(SunoError):
    policy = ErrorPolicy.ITEM
    advice = "The response is not the documented shape; fail this item and report it"


class SubmitOutcomeUnknown(SunoError):
    """A paid submit may or may not have been accepted."""

    policy = ErrorPolicy.ITEM
    advice = "Record the job as unknown and reconcile it; NEVER resubmit it blindly"

    def __init__(
        self,
        message: str,
        *,
        cause: BaseException | None = None,
        code: int | None = None,
        endpoint: str = "",
    ) -> None:
        self.cause = cause
        super().__init__(message, code=code, endpoint=endpoint)


class GaveUpWaiting(SunoError):
    """A read was abandoned because the limiter (or a Retry-After) would keep it waiting longer than allowed.

    Nothing is known about what it would have returned; whether the request left is irrelevant
    (reads are free).
    """

    policy = ErrorPolicy.ITEM
    advice = "The API asked to wait longer than this read may; report its answer as unknown"


class DownloadError(SunoError):
    """A stem file could not be downloaded."""


class UnsafeURL(DownloadError):
    policy = ErrorPolicy.ITEM
    advice = "Only http(s) URLs from an authenticated status call are downloaded"


class DownloadTooLarge(DownloadError):
    policy = ErrorPolicy.ITEM
    advice = "The file exceeds the byte cap; it was discarded"


class DownloadTruncated(DownloadError):
    policy = ErrorPolicy.RETRY
    advice = "The body ended early; the partial file is kept and a later call resumes it"


class DownloadExpired(DownloadError):
    policy = ErrorPolicy.ITEM
    advice = "The stem URL is gone (they expire after 14 days); fetch a fresh status or re-separate"


class DownloadFailed(DownloadError):
    policy = ErrorPolicy.RETRY
    advice = "The download failed; retry later (a partial file is kept for resuming)"


_ERROR_BY_CODE: dict[int, type[SunoError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: EndpointNotFound,
    405: RateLimited,
    413: PayloadTooLarge,
    429: InsufficientCredits,
    430: TooFrequent,
    451: SourceDownloadFailed,
    455: Maintenance,
    500: ServerError,
}


def error_class_for_code(code: int) -> type[SunoError]:
    """The error class a documented (or undocumented) code maps to."""
    known = _ERROR_BY_CODE.get(code)
    if known is not None:
        return known
    if 500 <= code <= 599:
        return ServerError
    return UnexpectedStatus


def error_for_code(
    code: int,
    *,
    endpoint: str,
    message: str = "",
    retry_after: float | None = None,
) -> SunoError:
    """Build the error for a code that came as the HTTP status or as the JSON `code`."""
    detail = message.strip() or "no message"
    return error_class_for_code(code)(
        f"Suno API answered {code}: {detail}",
        code=code,
        endpoint=endpoint,
        retry_after=retry_after,
    )
