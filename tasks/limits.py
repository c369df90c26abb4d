"""The request limiter a run paces its API calls with (submits and polls share it).

Every command on a key shares that key's budget (see `stemcat.client.ratelimit`):
`rate_store` unset uses the per-key SQLite file under the user's state directory, so
concurrent runs and commands on this host (whatever their data directories) stay under the
cap together with no setup; with a PostgreSQL ledger (``ledger_url``) and no ``rate_store``
the budget lives in the ledger's database, shared by every machine; ``memory`` keeps it to
this process.
"""

from __future__ import annotations

import os

from stemcat.client import API_KEY_ENV
from stemcat.client.ratelimit import SharedLimiter, limiter_for_key, run_rate_store
from stemcat.tasks.context import RunOptions


def make_limiter(options: RunOptions) -> SharedLimiter:
    """The shared, exact limiter at the configured rate, on the store `options.rate_store` names
    (unset: the PostgreSQL ledger's database, or else the per-key SQLite file).

    Close it with `await limiter.aclose()` when the run ends (gives back reserved slots).
    """
    # The key is only hashed into the budget's name here; like the client, read it from the
    # environment so it never becomes a flow parameter.
    store = run_rate_store(options.rate_store, options.ledger_url)  # a PostgreSQL ledger holds the budget too
    return limiter_for_key(
        options.base_url, os.environ.get(API_KEY_ENV, "").strip(), store=store,
        limit=options.rate_limit, window_s=options.rate_window_s, poll_share=options.poll_share,
    )
