"""Deployment entry points: the edge where a worker's environment becomes flow parameters.

`prefect.yaml` points a deployment here (``stemcat/entrypoints.py:separate_manifest``) instead of at
``flows/separate.py``: this flow has the same name and parameters, fills the ones a deployment
left unset from the worker's environment (``stemcat.settings``, the same variables the CLI reads),
and runs the flow's body in the same flow run. The flows themselves never read the environment.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from prefect import flow
from prefect.states import State

from stemcat.flows import separate
from stemcat.settings import load_settings

_SIGNATURE = inspect.signature(separate.separate_manifest.fn)


@functools.wraps(separate.separate_manifest.fn)
async def _separate_from_environment(*args: Any, **kwargs: Any) -> dict[str, Any] | State:
    bound = _SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    return await separate.separate_manifest.fn(**load_settings().fill(bound.arguments))


separate_manifest = flow(name="stemcat-separate", log_prints=False, retries=0)(_separate_from_environment)
