"""The run summary: one typed record, rendered for the terminal, the catalog and the Prefect UI."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from stemcat.client.endpoints import CREDIT_PATH, RECORD_INFO_PATH, SUBMIT_PATH
from stemcat.tasks.separation.planning import Plan

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_BAD_CONFIG = 2
EXIT_NO_CREDITS = 3
EXIT_UNAUTHORIZED = 4

EXIT_MEANINGS = {
    EXIT_OK: "every valid row ended separated and downloaded",
    EXIT_INCOMPLETE: "some jobs did not finish (failed, unknown, incomplete, timed out, status unreadable, expired, "
                     "or download failed)",
    EXIT_BAD_CONFIG: "bad configuration or unreadable manifest",
    EXIT_NO_CREDITS: "out of credits, or the --max-credits budget was reached with work left",
    EXIT_UNAUTHORIZED: "the API key was refused (401)",
}

REQUEST_KINDS = {SUBMIT_PATH: "submit", RECORD_INFO_PATH: "poll", CREDIT_PATH: "balance"}
REQUEST_KIND_NAMES = ("submit", "poll", "balance", "other")
# The least a finished job can cost: its submit, plus one poll when no callback comes.
IDEAL_REQUESTS_PER_JOB = {"with_callbacks": 1, "without_callbacks": 2}


def requests_by_kind(sent: Mapping[str, int]) -> dict[str, int]:
    """API requests by kind (submit, poll, balance, other) from counts by endpoint path."""
    kinds = dict.fromkeys(REQUEST_KIND_NAMES, 0)
    for path, n in sent.items():
        kinds[REQUEST_KINDS.get(path, "other")] += n
    return kinds


# Outcomes that leave a valid manifest row without its stems.
UNFINISHED = ("failed", "unknown", "timed_out", "poll_error", "expired", "download_failed", "not_submitted",
              "skip_unknown", "skip_failed", "skip_expired", "in_flight_elsewhere", "incomplete")


# Ledger statuses that leave a job this run claimed without its stems (also when no counter saw why).
LEFT_UNFINISHED = ("intent", "submitted", "unknown", "incomplete", "succeeded", "failed", "expired")


class RunSummary(BaseModel):
    run_id: str
    manifest: str
    data_dir: str
    dry_run: bool = False
    plan: Plan = Field(default_factory=Plan)
    counts: dict[str, int] = Field(default_factory=dict)
    reconciled: dict[str, int] = Field(default_factory=dict)
    incomplete: dict[str, list[str]] = Field(default_factory=dict)  # "audio_id/type" -> missing stems, ledger-wide
    jobs: dict[str, int] = Field(default_factory=dict)  # every job this run claimed, by its ledger status at the end
    credits_committed: int = 0
    balance_before: int | None = None
    balance_after: int | None = None
    stop_reason: str | None = None
    error: str | None = None
    rejects_file: str | None = None
    catalog_path: str = ""
    elapsed_s: float = 0.0
    exit_code: int = EXIT_OK
    requests: dict[str, int] = Field(default_factory=dict)  # API requests sent, by kind
    jobs_finished: int = 0  # jobs whose separation ended (succeeded or failed) in this run
    requests_per_job: float | None = None

    def count_requests(self, sent: Mapping[str, int]) -> None:
        """Tally the run's API requests (by endpoint path) against the jobs it finished."""
        self.requests = requests_by_kind(sent)
        self.jobs_finished = self.counts.get("succeeded", 0) + self.counts.get("failed", 0)
        total = sum(self.requests.values())
        self.requests_per_job = round(total / self.jobs_finished, 3) if self.jobs_finished else None

    def run_columns(self) -> dict[str, int]:
        """The request counts as the runs table's columns."""
        columns = {f"n_requests_{kind}": self.requests.get(kind, 0) for kind in REQUEST_KIND_NAMES}
        return {"n_jobs_finished": self.jobs_finished, **columns}

    def decide_exit_code(self) -> int:
        if self.exit_code not in (EXIT_OK, EXIT_INCOMPLETE):
            return self.exit_code
        if self.dry_run:
            return EXIT_OK
        if self.stop_reason is not None and self.counts.get("deferred", 0):
            return EXIT_NO_CREDITS
        unfinished = sum(self.counts.get(k, 0) for k in UNFINISHED)
        unfinished += sum(n for status, n in self.jobs.items() if status in LEFT_UNFINISHED)
        return EXIT_INCOMPLETE if unfinished else EXIT_OK

    def markdown(self) -> str:
        c = self.counts
        lines = [
            f"# stemcat run `{self.run_id}`",
            "",
            f"- manifest: `{self.manifest}` — {self.plan.rows} valid rows, {self.plan.rejected} rejected"
            + (f" (see `{self.rejects_file}`)" if self.rejects_file else ""),
            f"- separations submitted: {c.get('submitted', 0)} ({self.credits_committed} credits committed)",
            f"- succeeded: {c.get('succeeded', 0)}, failed: {c.get('failed', 0)}, unknown: {c.get('unknown', 0)}, "
            f"incomplete: {c.get('incomplete', 0)}, timed out: {c.get('timed_out', 0)}, "
            f"status unreadable: {c.get('poll_error', 0)}",
            f"- jobs this run submitted, by status now: "
            + (", ".join(f"{n} {status}" for status, n in sorted(self.jobs.items())) or "none"),
            f"- jobs downloaded: {c.get('downloaded', 0)} ({c.get('stems_downloaded', 0)} stem files, "
            f"{c.get('bytes_downloaded', 0) / 1e6:.1f} MB)",
            f"- balance: {self.balance_before} → {self.balance_after}",
            f"- API requests: {self._requests_line()}",
            f"- catalog: `{self.catalog_path}`",
            f"- exit status: {self.exit_code} ({EXIT_MEANINGS.get(self.exit_code, '')})",
        ]
        if self.stop_reason:
            lines.append(f"- stopped submitting: {self.stop_reason}")
        for key, missing in self.incomplete.items():
            lines.append(f"- incomplete `{key}`: missing {', '.join(missing)} (the next run re-reads it for free)")
        if self.error:
            lines.append(f"- error: {self.error}")
        return "\n".join(lines)

    def _requests_line(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.requests.items())
        per_job = "" if self.requests_per_job is None else (
            f"; {self.requests_per_job} per finished job ({self.jobs_finished}; ideal 1 with callbacks, 2 without)")
        return (kinds or "none") + per_job

    def type_table(self) -> list[dict[str, object]]:
        types = sorted(set(self.plan.submit_by_type) | set(self.plan.credits_by_type))
        return [
            {"separation_type": t, "planned_submissions": self.plan.submit_by_type.get(t, 0),
             "planned_credits": self.plan.credits_by_type.get(t, 0)}
            for t in types
        ]
