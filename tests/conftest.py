import os

# The key travels only in the HTTP header; the simulator accepts any non-empty key.
os.environ.setdefault("SUNO_API_KEY", "test-key-not-secret")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
