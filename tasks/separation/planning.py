"""What a run will do before it does it: each key of the manifest classified, and the sums (`Plan`).

`Plan` is what `--dry-run` prints and what the pre-flight balance check weighs; `classify`
reads the latest job of each key from the ledger and applies `actions.decide`.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from stemcat.catalog import Ledger
from stemcat.client import CREDITS_PER_TYPE, SeparationType
from stemcat.tasks.context import WorkItem
from stemcat.tasks.separation.actions import Action, ResubmitPolicy, decide
from stemcat.tasks.tracks import TrackKey


def rate_limited_seconds(requests: int, *, limit: int, window_s: float) -> float:
    """Least wall time `requests` calls take at `limit` per `window_s` (paced evenly)."""
    if requests <= 0:
        return 0.0
    return requests * window_s / limit


class Plan(BaseModel):
    """What a run will do, before it does it (the `--dry-run` output, and the pre-flight check)."""

    rows: int = 0
    rejected: int = 0
    keys: int = 0
    submit_by_type: dict[str, int] = Field(default_factory=dict)
    credits_by_type: dict[str, int] = Field(default_factory=dict)
    actions: dict[str, int] = Field(default_factory=dict)
    skipped_cost: dict[str, int] = Field(default_factory=dict)  # credits to re-separate skipped keys, by state

    @property
    def credits_new(self) -> int:
        return sum(self.credits_by_type.values())

    @property
    def submissions(self) -> int:
        return sum(self.submit_by_type.values())

    def min_seconds(self, *, limit: int, window_s: float) -> float:
        """Least time the rate limit implies: a submit and at least one poll per new job, a poll per resumed one."""
        requests = 2 * self.submissions + self.actions.get(Action.POLL, 0)
        return rate_limited_seconds(requests, limit=limit, window_s=window_s)

    def add(self, items: list[WorkItem]) -> None:
        actions = Counter(self.actions)
        submit, credits, skipped = Counter(self.submit_by_type), Counter(self.credits_by_type), Counter(self.skipped_cost)
        for item in items:
            actions[item.action] += 1
            cost = CREDITS_PER_TYPE[SeparationType(item.separation_type)]
            if item.action == Action.SUBMIT:
                submit[item.separation_type] += 1
                credits[item.separation_type] += cost
            elif item.action.startswith("skip_"):
                skipped[item.action.removeprefix("skip_")] += cost
        self.keys += len(items)
        self.actions, self.submit_by_type = dict(actions), dict(submit)
        self.credits_by_type, self.skipped_cost = dict(credits), dict(skipped)


def classify(ledger: Ledger, keys: list[TrackKey], policy: ResubmitPolicy) -> list[WorkItem]:
    """A `WorkItem` per key, de-duplicated, in manifest order."""
    unique = list(dict.fromkeys(keys))
    latest = ledger.latest_jobs((k.audio_id, k.separation_type) for k in unique)
    items = []
    for key in unique:
        job = latest.get((key.audio_id, key.separation_type))
        status = job.status if job else None
        items.append(WorkItem(key.audio_id, key.task_id, key.separation_type, decide(status, policy).value,
                              status=status, job_id=job.job_id if job else None))
    return items
