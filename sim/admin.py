"""`AdminClient`: drive a simulator running in another process through its `/admin` routes."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from stemcat.sim.config import FaultSpec
from stemcat.sim.models import Charge, SeparationTaskView, SimStats, SimTrack, TrackTruth


class AdminClient:
    """Synchronous client of `/admin/...`; raises `httpx.HTTPStatusError` on any non-2xx answer."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def health(self) -> bool:
        return bool(self._call("GET", "/admin/health").get("ok"))

    def ledger(self) -> list[Charge]:
        return [Charge.model_validate(row) for row in self._call("GET", "/admin/ledger")]

    def truth(self, audio_id: str) -> TrackTruth:
        return TrackTruth.model_validate(self._call("GET", "/admin/truth", params={"audioId": audio_id}))

    def advance_clock(self, seconds: float) -> float:
        """Move the sim clock forward; returns the new sim time in seconds."""
        return float(self._call("POST", "/admin/clock/advance", json={"seconds": seconds})["now_s"])

    def set_balance(self, credits: int) -> None:
        self._call("POST", "/admin/balance", json={"credits": credits})

    def balance(self) -> int:
        return int(self._call("GET", "/admin/balance")["credits"])

    def create_tracks(self, n: int = 20) -> list[SimTrack]:
        """Create music tasks for n tracks; also a `TrackSource` for `make_tracks_manifest`."""
        return [SimTrack.model_validate(row) for row in self._call("POST", "/admin/tracks", json={"n": n})]

    def inject(self, fault: FaultSpec) -> int:
        return int(self._call("POST", "/admin/faults", json=fault.model_dump(mode="json"))["id"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/faults")

    def tasks(self) -> list[SeparationTaskView]:
        return [SeparationTaskView.model_validate(row) for row in self._call("GET", "/admin/tasks")]

    def stats(self) -> SimStats:
        return SimStats.model_validate(self._call("GET", "/admin/stats"))
