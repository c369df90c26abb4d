"""Deployment entry points: the edge where a worker's environment becomes flow parameters.

A deployment whose worker should honour ``STEMCAT_*`` / ``SUNO_BASE_URL`` points here
(``stemcat/entrypoints.py:separate_manifest`` or ``:separate_inbox``) instead of at ``flows/``:
each flow here has the same name and parameters as the one it wraps, fills the ones a deployment
left unset from the worker's environment (``stemcat.settings``, the same variables the CLI reads),
and runs the wrapped flow's body in the same flow run. The flows themselves never read the environment.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from prefect import flow
from prefect.states import State

from prefect.flows import Flow

from stemcat.flows import inbox, separate
from stemcat.settings import load_settings


def _from_environment(wrapped: Flow[..., Any]) -> Flow[..., Any]:
    """A flow named and shaped like `wrapped` whose unset parameters come from the environment."""
    signature = inspect.signature(wrapped.fn)

    @functools.wraps(wrapped.fn)
    async def body(*args: Any, **kwargs: Any) -> dict[str, Any] | State:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return await wrapped.fn(**load_settings().fill(bound.arguments))

    return flow(name=wrapped.name, log_prints=False, retries=0)(body)


separate_manifest = _from_environment(separate.separate_manifest)
separate_inbox = _from_environment(inbox.separate_inbox)
