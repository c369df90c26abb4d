"""Errors raised by the catalog.

    CatalogError                      base of everything below
    ├── LedgerClosedError             the Ledger was closed; open a new one
    ├── LedgerUnavailableError        the ledger's database server cannot be reached (or the
    │                                 connection broke): nothing was written unless it says so
    ├── LedgerBusyError               another writer held the ledger's write lock past the busy
    │                                 timeout; try again
    ├── UnknownJobError (LookupError) no job (or stem) with that id: check the token
    ├── UnknownRunError (LookupError) finish_run for a run that was never started
    └── InvalidTransitionError (ValueError)
                                      the requested status change breaks the job life cycle
                                      (see ``catalog.transitions``); the ledger is unchanged
"""

from __future__ import annotations


class CatalogError(Exception):
    """Base class of the catalog's errors."""


class LedgerClosedError(CatalogError):
    """The ledger was used after ``close()``."""


class LedgerUnavailableError(CatalogError):
    """The ledger's database could not be reached, or the connection broke mid-statement.

    A claim that raises this was not committed, or (``commit_unknown``) its COMMIT was sent and
    the answer lost: either way the paid request must not be sent; reconciliation settles the
    second case like any intent whose owner went away.
    """

    def __init__(self, where: str, why: str, *, commit_unknown: bool = False) -> None:
        self.where = where
        self.commit_unknown = commit_unknown
        outcome = "the last commit's outcome is unknown" if commit_unknown else "nothing was written"
        super().__init__(f"the ledger at {where} is unavailable ({why}); {outcome}. Check the database server, then retry")


class LedgerBusyError(CatalogError):
    """Another connection held the ledger's write lock longer than the busy timeout."""


class UnknownJobError(CatalogError, LookupError):
    """No job (or no stem of that job) matches the given id."""

    def __init__(self, job_id: str, stem: str | None = None) -> None:
        self.job_id = job_id
        self.stem = stem
        what = f"job {job_id!r}" if stem is None else f"stem {stem!r} of job {job_id!r}"
        super().__init__(f"{what} is not in the ledger")


class InvalidTransitionError(CatalogError, ValueError):
    """A status change that the job life cycle does not allow."""

    def __init__(self, job_id: str, old: str, new: str, why: str = "") -> None:
        self.job_id = job_id
        self.old = old
        self.new = new
        detail = f": {why}" if why else ""
        super().__init__(f"job {job_id!r} cannot go from {old!r} to {new!r}{detail}")


class UnknownRunError(CatalogError, LookupError):
    """No run with that id was started in this ledger."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id!r} was never started in this ledger; call start_run first")
