import atexit
import os
import shutil
import tempfile

# The key travels only in the HTTP header; the simulator accepts any non-empty key.
os.environ.setdefault("SUNO_API_KEY", "test-key-not-secret")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Tests choose their ledger themselves: never a developer's shared PostgreSQL ledger.
os.environ.pop("STEMCAT_LEDGER_URL", None)
os.environ.pop("STEMCAT_STORAGE_URL", None)

# Per-key rate budgets live under XDG_STATE_HOME: tests get a throwaway one instead of
# filling (and sharing budgets through) the user's ~/.local/state/stemcat.
_state_home = tempfile.mkdtemp(prefix="stemcat-test-state-")
os.environ["XDG_STATE_HOME"] = _state_home
atexit.register(shutil.rmtree, _state_home, ignore_errors=True)

# A throwaway PostgreSQL per session for the ledger's second backend (skipped without server binaries).
from tests.servers.postgres import postgres_server, postgres_url  # noqa: E402,F401
# A throwaway S3-compatible server (SeaweedFS) per session, a fresh s3://bucket/prefix per test.
from tests.servers.seaweedfs import s3_server, s3_url  # noqa: E402,F401
