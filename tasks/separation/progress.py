"""A seam between the pipeline and whatever shows its progress (the CLI's rich display).

Flows and tasks report events here; with no reporter installed (a deployment run)
the events cost nothing. Keeping this a plain observer keeps the display out of
flow parameters, which Prefect stores.
"""

from __future__ import annotations

from typing import Protocol


class ProgressReporter(Protocol):
    def total(self, stage: str, n: int) -> None: ...
    def advance(self, stage: str, n: int = 1) -> None: ...
    def message(self, text: str) -> None: ...


class _Silent:
    def total(self, stage: str, n: int) -> None:
        pass

    def advance(self, stage: str, n: int = 1) -> None:
        pass

    def message(self, text: str) -> None:
        pass


_reporter: ProgressReporter = _Silent()


def set_reporter(reporter: ProgressReporter | None) -> None:
    global _reporter
    _reporter = reporter if reporter is not None else _Silent()


def reporter() -> ProgressReporter:
    return _reporter
