"""Classify a chunk of keys against the ledger: what this run would pay for, poll, download or skip."""

from __future__ import annotations

import asyncio
from collections import Counter

from pydantic import BaseModel, Field
from prefect import task
from prefect.cache_policies import NONE

from stemcat.catalog import Ledger
from stemcat.client import CREDITS_PER_TYPE, SeparationType
from stemcat.tasks.context import WorkItem
from stemcat.tasks.planning import Action, ResubmitPolicy, decide, rate_limited_seconds
from stemcat.tasks.tracks import TrackKey


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


@task(name="plan-batch", cache_policy=NONE, retries=0)
async def plan_batch(ledger: Ledger, keys: list[TrackKey], policy: ResubmitPolicy) -> list[WorkItem]:
    """Decide, from the ledger, the action for each key of a batch."""
    return await asyncio.to_thread(classify, ledger, keys, policy)
