"""The process exit statuses of every stemcat command, as README.md documents them.

A leaf module (no stemcat imports): flows and tasks record these in run summaries and
the catalog; the CLI turns them into the process status.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INCOMPLETE = 1
    BAD_CONFIG = 2
    NO_CREDITS = 3
    UNAUTHORIZED = 4

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "every valid row ended separated and downloaded",
    ExitCode.INCOMPLETE: ("some jobs did not finish (failed, unknown, incomplete, timed out, status unreadable, "
                          "expired, or download failed)"),
    ExitCode.BAD_CONFIG: "bad configuration or unreadable manifest",
    ExitCode.NO_CREDITS: "out of credits, or the --max-credits budget was reached with work left",
    ExitCode.UNAUTHORIZED: "the API key was refused (401)",
}
