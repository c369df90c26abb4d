"""The client's rate-limit defaults, declared once: every other module imports them from here.

The API's documented budget is 20 requests per 10 seconds per key.
"""

from __future__ import annotations

DEFAULT_RATE_LIMIT = 20
DEFAULT_WINDOW_S = 10.0
# Most of the budget polls may take while submits wait (see `policy`).
DEFAULT_POLL_SHARE = 0.5
# The window the rules enforce is the API's plus this share of it (at least `rules.MIN_GUARD_S`).
DEFAULT_SAFETY = 0.01
# How far ahead a limiter reserves slots from its store, and at most how many at once.
DEFAULT_LOOKAHEAD_S = 0.2
DEFAULT_MAX_AHEAD = 64
# A limiter that has not sent for this long is cold: its next request likely opens a new
# connection and arrives late, so that admission is logged COLD_START_MARGIN_S late.
COLD_AFTER_S = 5.0
COLD_START_MARGIN_S = 0.5

# Which store holds a key's budget (see `stores.open_admission_store`); unset: the per-key
# SQLite file under the state directory. Read by the client like SUNO_BASE_URL, so every
# command that calls the API shares the budget a run uses.
RATE_STORE_ENV = "STEMCAT_RATE_STORE"
# With a PostgreSQL ledger and no rate store set, the key's budget lives in the ledger's database.
LEDGER_URL_ENV = "STEMCAT_LEDGER_URL"
STATE_DIR_ENV = "XDG_STATE_HOME"
MEMORY_STORE = "memory"
