"""Where a key's rate budget lives, and which store a `rate_store` setting names.

===========================  ==========================================================
store                        who shares the budget
===========================  ==========================================================
``memory``                   the coroutines of this process only
SQLite file (the default)    every process on this host (WAL, ``BEGIN IMMEDIATE``)
``http://host:port``         every machine that reaches one pacer service
===========================  ==========================================================

By default a key's budget is ``$XDG_STATE_HOME/stemcat/rate-<budget>.sqlite``
(``~/.local/state`` when unset), where ``<budget>`` hashes the base URL and the key's hash:
every command on the same key shares it whatever its data directory, with no setup.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from stemcat.client.ratelimit.defaults import MEMORY_STORE, STATE_DIR_ENV
from stemcat.client.ratelimit.rules import budget_id
from stemcat.client.ratelimit.stores.base import AdmissionStore
from stemcat.client.ratelimit.stores.http import HttpAdmissionStore
from stemcat.client.ratelimit.stores.memory import MemoryAdmissionStore
from stemcat.client.ratelimit.stores.sqlite import SqliteAdmissionStore

__all__ = [
    "AdmissionStore",
    "HttpAdmissionStore",
    "MemoryAdmissionStore",
    "SqliteAdmissionStore",
    "default_state_dir",
    "default_store_path",
    "open_admission_store",
]


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/stemcat`, or `~/.local/state/stemcat`."""
    base = os.environ.get(STATE_DIR_ENV) or str(Path.home() / ".local" / "state")
    return Path(base) / "stemcat"


def default_store_path(base_url: str, api_key: str) -> Path:
    """The per-key SQLite budget every command on this host shares by default."""
    return default_state_dir() / f"rate-{budget_id(base_url, api_key)}.sqlite"


def open_admission_store(spec: str | None, *, base_url: str, api_key: str) -> AdmissionStore:
    """The store a `rate_store` setting names.

    None: the per-key SQLite file (`default_store_path`); ``memory``: this process only;
    ``http(s)://host:port``: a pacer service (`python -m stemcat.client.ratelimit.pacer_service`);
    ``sqlite:///path`` or a plain path: that SQLite file.
    """
    if spec is None or not spec.strip():
        return SqliteAdmissionStore(default_store_path(base_url, api_key))
    value = spec.strip()
    if value == MEMORY_STORE:
        return MemoryAdmissionStore()
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("http", "https"):
        return HttpAdmissionStore(value, budget_id(base_url, api_key))
    if scheme == "sqlite":
        return SqliteAdmissionStore(Path(value.removeprefix("sqlite://")))
    if scheme and len(scheme) > 1:
        raise ValueError(f"unknown rate store {value!r}: use memory, a path, sqlite:///path or http://host:port")
    return SqliteAdmissionStore(Path(value).expanduser())
