"""Deployment entry points: the edge where a worker's environment becomes flow parameters.

A deployment whose worker should honour ``STEMCAT_*`` / ``SUNO_BASE_URL`` points here
(``stemcat/entrypoints.py:separate_manifest`` or ``:separate_inbox``; the analysis and export
flows' are in ``stemcat/entrypoints_catalog.py``, so that a separation run, which loads this
module in a fresh process, does not import them) instead of at ``flows/``: each has the same name and
parameters as the one it wraps, fills the ones a deployment left unset from the worker's
environment (``stemcat.settings``, the same variables the CLI reads), and runs the wrapped flow's
body in the same flow run. The flows themselves never read the environment.

``separate_fanout``, the parent of a fanned-out run, is the exception: see below.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from prefect import flow
from prefect.flows import Flow
from prefect.states import State

from stemcat.flows import fanout, inbox, separate
from stemcat.settings import load_settings


def _filled(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    filled = load_settings().fill(bound.arguments)
    return {name: value for name, value in filled.items() if name in signature.parameters}  # only this flow's own


def from_environment(wrapped: Flow[..., Any]) -> Flow[..., Any]:
    """A flow named and shaped like `wrapped` whose unset parameters come from the environment.

    Its result is persisted (a small summary) so the parent of a fanned-out run can read a child's figures.
    """
    signature = inspect.signature(wrapped.fn)
    if inspect.iscoroutinefunction(wrapped.fn):
        @functools.wraps(wrapped.fn)
        async def body(*args: Any, **kwargs: Any) -> dict[str, Any] | State:
            return await wrapped.fn(**_filled(signature, args, kwargs))
    else:
        @functools.wraps(wrapped.fn)
        def body(*args: Any, **kwargs: Any) -> dict[str, Any] | State:  # type: ignore[misc]
            return wrapped.fn(**_filled(signature, args, kwargs))

    return flow(name=wrapped.name, log_prints=False, retries=0, persist_result=True,
                task_runner=wrapped.task_runner)(body)


separate_manifest = from_environment(separate.separate_manifest)
separate_inbox = from_environment(inbox.separate_inbox)

# The parent of a fanned-out run reads no environment on purpose: it passes its children only the
# parameters it was given, and each child's worker fills the rest from its own environment (the
# child deployment's entry point is `separate_manifest` above), so one host's data directory or
# ledger URL is never copied into every child's parameters, which Prefect stores.
separate_fanout = fanout.separate_fanout
