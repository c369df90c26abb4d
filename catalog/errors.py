"""Errors raised by the catalog.

    CatalogError                      base of everything below
    ├── LedgerClosedError             the Ledger was closed; open a new one
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
