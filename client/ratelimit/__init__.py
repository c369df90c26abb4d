"""Rate limiting of the API key's budget (about 20 requests per 10 s), in one package.

- `defaults`: the client's rate-limit defaults, declared once.
- `rules`: the pure admission rules (window, spacing, slow-down, pause) every store applies.
- `limiter`: `SharedLimiter`, the one limiter; `limiter_for_key` builds the one every command uses.
- `policy`: how polls and submits share the budget; `arrivals`, `reports`: the limiter's helpers.
- `stores`: where the budget lives (memory, a SQLite file per key, PostgreSQL for several machines).
- `base`: what the client needs from a limiter (`RequestLimiter`), and `NoLimiter`.
"""

from stemcat.client.ratelimit.base import LimiterStats, NoLimiter, RequestLimiter
from stemcat.client.ratelimit.limiter import SharedLimiter, limiter_for_key
from stemcat.client.ratelimit.policy import RequestClass, polling
from stemcat.client.ratelimit.rules import AdaptiveRate, budget_id, next_admission_time
from stemcat.client.ratelimit.stores import (
    AdmissionStore,
    MemoryAdmissionStore,
    SqliteAdmissionStore,
    default_store_path,
    open_admission_store,
    rate_store_from_env,
    run_rate_store,
)

__all__ = [
    "AdaptiveRate",
    "AdmissionStore",
    "LimiterStats",
    "MemoryAdmissionStore",
    "NoLimiter",
    "RequestClass",
    "RequestLimiter",
    "SharedLimiter",
    "SqliteAdmissionStore",
    "budget_id",
    "default_store_path",
    "limiter_for_key",
    "next_admission_time",
    "open_admission_store",
    "polling",
    "rate_store_from_env",
    "run_rate_store",
]
