"""A key's rate budget held by a pacer service (`stemcat.client.ratelimit.pacer_service`): shared across machines.

The wire format is a handful of small JSON bodies declared here once, used by both the
client store and the service. The service answers with waits relative to its own clock,
so the machines' clocks need not agree; a slot therefore reaches its holder half a
round trip late, which only makes the pacing more conservative.
The key never travels to the pacer: budgets are named by `stemcat.client.ratelimit.rules.budget_id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stemcat.client.errors import PacerUnavailable
from stemcat.client.ratelimit.rules import (
    MAX_FIRST_MARGIN_S,
    MAX_SLOTS_PER_RESERVATION,
    PacingParams,
    PacingState,
    Reservation,
    Slot,
)

API_PREFIX = "/v1/budgets"
BUDGET_ID_PATTERN = r"^[0-9a-f]{8,64}$"
DEFAULT_PACER_TIMEOUT = httpx.Timeout(10.0, connect=5.0)

ReplyT = TypeVar("ReplyT", bound=BaseModel)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamsBody(_Wire):
    limit: int = Field(ge=1)
    window_s: float = Field(gt=0, le=86_400)
    safety: float = Field(ge=0, lt=1)

    def params(self) -> PacingParams:
        return PacingParams(self.limit, self.window_s, self.safety)

    @classmethod
    def of(cls, params: PacingParams) -> dict[str, float | int]:
        return {"limit": params.limit, "window_s": params.window_s, "safety": params.safety}


class ReserveBody(ParamsBody):
    count: int = Field(ge=1, le=MAX_SLOTS_PER_RESERVATION)
    first_margin_s: float = Field(default=0.0, ge=0, le=MAX_FIRST_MARGIN_S)


class ThrottleBody(ParamsBody):
    retry_after: float | None = Field(default=None, ge=0)


class RecoverBody(ParamsBody):
    successes: int = Field(ge=0)


class PauseBody(_Wire):
    seconds: float = Field(ge=0, le=86_400)


class TicketsBody(_Wire):
    tickets: list[int] = Field(max_length=10_000)


class LateBody(TicketsBody):
    """Admissions whose requests may have arrived as late as `ages_s` seconds ago (none: now)."""

    ages_s: list[float] | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _one_age_per_ticket(self) -> LateBody:
        if self.ages_s is not None and len(self.ages_s) != len(self.tickets):
            raise ValueError("one age per ticket")
        if self.ages_s is not None and not all(0 <= age <= 86_400 for age in self.ages_s):
            raise ValueError("ages must be in [0, 86400] seconds")
        return self


class SlotReply(_Wire):
    ticket: int
    wait_s: float = Field(ge=0)


class ReserveReply(_Wire):
    slots: list[SlotReply]
    factor: float


class ClaimReply(_Wire):
    valid: list[int]


class StateReply(_Wire):
    factor: float
    paused_for_s: float
    throttles: int
    pauses: int


class HttpAdmissionStore:
    """`AdmissionStore` backed by a pacer service at `base_url`."""

    def __init__(
        self,
        base_url: str,
        budget: str,
        *,
        timeout: httpx.Timeout = DEFAULT_PACER_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self._budget = budget
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport, trust_env=False)

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        body = {**ParamsBody.of(params), "count": count, "first_margin_s": first_margin_s}
        reply = await self._post("reserve", body, ReserveReply)
        return Reservation(tuple(Slot(s.ticket, s.wait_s) for s in reply.slots), reply.factor)

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        if not tickets:
            return set()
        return set((await self._post("claim", {"tickets": list(tickets)}, ClaimReply)).valid)

    async def release(self, tickets: Sequence[int]) -> None:
        if tickets:
            await self._post("release", {"tickets": list(tickets)}, ClaimReply)

    async def throttle(self, params: PacingParams, retry_after: float | None) -> PacingState:
        return _state(await self._post("throttle", {**ParamsBody.of(params), "retry_after": retry_after}, StateReply))

    async def pause(self, seconds: float) -> PacingState:
        return _state(await self._post("pause", {"seconds": seconds}, StateReply))

    async def recover(self, params: PacingParams, successes: int) -> PacingState:
        return _state(await self._post("recover", {**ParamsBody.of(params), "successes": successes}, StateReply))

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        # Ages are relative: the service reads its own clock when the body arrives, which only
        # moves the admissions a little later (the request's way there).
        if tickets:
            body: dict[str, object] = {"tickets": list(tickets)}
            if ages_s is not None:
                body["ages_s"] = list(ages_s)
            await self._post("late", body, ClaimReply)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, action: str, body: dict[str, object], reply: type[ReplyT]) -> ReplyT:
        path = f"{API_PREFIX}/{self._budget}/{action}"
        try:
            response = await self._http.post(path, json=body)
        except httpx.HTTPError as error:
            raise PacerUnavailable(f"pacer at {self.base_url} unreachable: {type(error).__name__}") from None
        if response.status_code != 200:
            raise PacerUnavailable(f"pacer at {self.base_url} answered {response.status_code} to {action}")
        try:
            return reply.model_validate_json(response.content)
        except ValidationError:
            raise PacerUnavailable(f"pacer at {self.base_url} sent an unreadable answer to {action}") from None


def _state(reply: StateReply) -> PacingState:
    # Only the factor matters to a client; the not-before stays on the service's clock.
    return PacingState(factor=reply.factor, throttles=reply.throttles, pauses=reply.pauses)
