"""Build the request limiter a run paces its API calls with (submits and polls share it).

Every run on a key shares that key's budget (see `stemcat.client.shared_pacing`):
`rate_store` unset uses the per-key SQLite file under the user's state directory, so
concurrent runs on this host (whatever their data directories) stay under the cap together
with no setup; ``http://host:port`` shares it across machines through a pacer service;
``memory`` keeps it to this process. The API's documented budget is 20 requests per 10 s.
"""

from __future__ import annotations

import os

from stemcat.client import API_KEY_ENV
from stemcat.client.shared_pacing import SharedLimiter, open_admission_store
from stemcat.tasks.context import RunOptions


def make_limiter(options: RunOptions) -> SharedLimiter:
    """The shared, exact limiter at the configured rate, on the store `options.rate_store` names.

    Close it with `await limiter.aclose()` when the run ends (gives back reserved slots).
    """
    # The key is only hashed into the budget's name here; like the client, read it from the
    # environment so it never becomes a flow parameter.
    store = open_admission_store(
        options.rate_store, base_url=options.base_url, api_key=os.environ.get(API_KEY_ENV, "").strip()
    )
    return SharedLimiter(store, options.rate_limit, options.rate_window_s, poll_share=options.poll_share)
