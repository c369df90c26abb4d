"""The one place stemcat reads its environment, at the edges only.

The CLI and the deployment entry point (``stemcat.entrypoints``) read these and pass them
to the flows as explicit parameters; flows and tasks never read the environment (the API
key is the exception by design: it travels only in the HTTP header and is never a Prefect
parameter, so the client reads it itself).

A tunable left unset here is left unset in the flow's parameters too: its default is
written once, in ``stemcat.tasks.context.RunOptions``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# The environment values a run of `separate_manifest` takes when its caller left them unset.
RUN_SETTINGS = (
    "base_url", "callback_url", "rate_store", "rate_limit", "rate_window_s", "poll_share", "concurrency",
    "download_concurrency", "batch_size", "poll_initial_s", "poll_max_s", "job_timeout_s", "max_download_mb",
    "ledger_url", "analysis_workers", "storage_url",
)


class SettingsError(ValueError):
    """An environment variable holds a value stemcat cannot use; the message names it."""


class Settings(BaseSettings):
    """Environment-derived values (`STEMCAT_*`, plus `SUNO_API_KEY` / `SUNO_BASE_URL`); unset means "the default"."""

    model_config = SettingsConfigDict(env_prefix="STEMCAT_", extra="ignore")

    data_dir: Path = Field(default=Path("stemcat-data"), description="Where stems, ledger and catalog live.")
    base_url: str | None = Field(
        default=None,
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
    rate_limit: int | None = Field(default=None, ge=1, description="Requests per rate window (submits and polls).")
    rate_window_s: float | None = Field(default=None, gt=0)
    poll_share: float | None = Field(default=None, gt=0.0, le=1.0,
                                     description="Most of the rate budget polls may take while submits wait.")
    concurrency: int | None = Field(default=None, ge=1, description="Jobs in flight: concurrency x batch size.")
    download_concurrency: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1, description="Tracks per Prefect task run.")
    poll_initial_s: float | None = Field(
        default=None, gt=0, description="First poll this long after submitting (default: timed from observed latencies).")
    poll_max_s: float | None = Field(default=None, gt=0, description="Longest wait between polls of one job.")
    job_timeout_s: float | None = Field(default=None, gt=0,
                                        description="Stop polling a job after this; a later run resumes it.")
    max_download_mb: float | None = Field(default=None, gt=0, description="Refuse any stem file larger than this.")
    analysis_workers: int | None = Field(default=None, ge=1, description="Processes that decode and measure audio.")
    ledger_url: str | None = Field(default=None, repr=False, description="postgresql://… ledger shared by "
                                   "several hosts; unset: ledger.sqlite in the data directory.")
    storage_url: str | None = Field(default=None, description="Stems and the published catalog: a local path or "
                                    "s3://bucket/prefix (keys from the AWS_* variables); unset: the data directory.")

    def has_api_key(self) -> bool:
        return bool(self.api_key and self.api_key.get_secret_value().strip())

    def fill(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """`parameters` with each run setting its caller left None taken from the environment, when set there."""
        filled = dict(parameters)
        for name in RUN_SETTINGS:
            if filled.get(name) is None and getattr(self, name) is not None:
                filled[name] = getattr(self, name)
        if filled.get("data_dir") is None:
            filled["data_dir"] = str(self.data_dir)
        return filled


def _variable(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"STEMCAT_{field.upper()}"


def load_settings() -> Settings:
    """The environment's settings; a bad value raises `SettingsError` naming the variable (one line)."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        where = str(first.get("loc", ("?",))[0])
        name = where if where.isupper() else _variable(where)
        value = os.environ.get(name, first.get("input"))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise SettingsError(f"{name}={value!r}: {message}") from None


def quiet_prefect_environment() -> None:
    """Keep a newcomer's terminal clean: no telemetry, no Prefect chatter on the terminal.

    The flow runs' own log lines (INFO and up) still reach the Prefect server's run logs:
    only the terminal's handler is raised (the CLI prints the outcome itself; `-v` lowers it again).
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("PREFECT_CLI_COLORS", "true")
    if os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] != "INFO":
        # Prefect's background workers log under their class names, outside the "prefect" tree,
        # so the console level above does not reach their shutdown chatter.
        for worker in ("EventsWorker", "APILogWorker"):
            logging.getLogger(worker).setLevel(logging.ERROR)


def verbose_prefect_environment() -> None:
    """`-v`: Prefect's and stemcat's INFO logs on the terminal too."""
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"
