"""A flow's outcome as its summary: a flow that does not end with exit status 0 returns a Failed state
whose message is the reason and whose data is the summary; callers read the summary either way."""

from __future__ import annotations

from typing import Any

from prefect.states import Failed, State

from stemcat.exit_codes import ExitCode


def finish(summary: dict[str, Any], reason: str) -> dict[str, Any] | State:
    """What a flow returns: its summary when `summary["exit_code"]` is 0, else Failed(reason) carrying it."""
    if summary["exit_code"] == ExitCode.OK:
        return summary
    return Failed(message=reason, data=summary)


def _unpack(outcome: dict[str, Any] | State, result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    if isinstance(result, BaseException):
        raise result
    assert isinstance(outcome, State)
    raise RuntimeError(f"the flow run ended {outcome.type.value} without a summary: {outcome.message}")


async def summary_of(outcome: dict[str, Any] | State) -> dict[str, Any]:
    """The summary in a flow's outcome (its return value, or a final state carrying it); re-raises a crash."""
    if not isinstance(outcome, State):
        return outcome
    if isinstance(outcome.data, dict):  # a state the flow's body returned, not yet persisted
        return outcome.data
    return _unpack(outcome, await outcome.aresult(raise_on_failure=False))


def summary_of_sync(outcome: dict[str, Any] | State) -> dict[str, Any]:
    """`summary_of` for a synchronous flow's outcome."""
    if not isinstance(outcome, State):
        return outcome
    if isinstance(outcome.data, dict):
        return outcome.data
    return _unpack(outcome, outcome.result(raise_on_failure=False))
