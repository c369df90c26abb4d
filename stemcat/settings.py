"""The one place stemcat reads its environment.

Every tunable has a safe default here; the CLI turns these into explicit flow
parameters, so nothing deep inside flows or tasks reads the environment (the API
key is the exception by design: it travels only in the HTTP header and is never a
Prefect parameter, so the client reads it itself).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from stemcat.client.ratelimit.defaults import DEFAULT_POLL_SHARE

REAL_API_BASE_URL = "https://api.sunoapi.org"


class Settings(BaseSettings):
    """Environment-derived defaults (`STEMCAT_*`, plus `SUNO_API_KEY` / `SUNO_BASE_URL`)."""

    model_config = SettingsConfigDict(env_prefix="STEMCAT_", extra="ignore")

    data_dir: Path = Field(default=Path("stemcat-data"), description="Where stems, ledger and catalog live.")
    base_url: str = Field(
        default=REAL_API_BASE_URL,
        validation_alias=AliasChoices("SUNO_BASE_URL", "STEMCAT_BASE_URL"),
        description="Suno API base URL.",
    )
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SUNO_API_KEY"), description="Bearer key."
    )
    callback_url: str | None = Field(
        default=None,
        description="Public base URL that reaches `stemcat callbacks serve`; unset: a loopback receiver per run.",
    )
    rate_store: str | None = Field(
        default=None, description="Where concurrent runs share the key's rate budget (see tasks.limits)."
    )
    rate_limit: int = Field(default=20, ge=1, description="Requests per rate window (submits and polls).")
    rate_window_s: float = Field(default=10.0, gt=0)
    poll_share: float = Field(default=DEFAULT_POLL_SHARE, gt=0.0, le=1.0,
                              description="Most of the rate budget polls may take while submits wait.")
    concurrency: int = Field(default=8, ge=1, description="Jobs in flight at once.")
    download_concurrency: int = Field(default=8, ge=1)
    batch_size: int = Field(default=50, ge=1, description="Tracks per Prefect task run.")
    poll_initial_s: float | None = Field(
        default=None, gt=0, description="First poll this long after submitting (default: timed from observed latencies).")
    poll_max_s: float = Field(default=60.0, gt=0, description="Longest wait between polls of one job.")
    job_timeout_s: float = Field(default=1800.0, gt=0, description="Stop polling a job after this; a later run resumes it.")
    max_download_mb: float = Field(default=200.0, gt=0, description="Refuse any stem file larger than this.")
    ledger_url: str | None = Field(default=None, repr=False, description="postgresql://… ledger shared by "
                                   "several hosts; unset: ledger.sqlite in the data directory.")


def load_settings() -> Settings:
    return Settings()


def quiet_prefect_environment() -> None:
    """Keep a newcomer's terminal clean: no telemetry, no INFO chatter from Prefect."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("PREFECT_CLI_COLORS", "true")
    if os.environ["PREFECT_LOGGING_LEVEL"] != "INFO":
        # Prefect's background workers log under their class names, outside the "prefect" tree,
        # so the level above does not reach their shutdown chatter.
        for worker in ("EventsWorker", "APILogWorker"):
            logging.getLogger(worker).setLevel(logging.ERROR)
