"""Active fault injections and which request each one hits."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from stemcat.sim.config import FaultRoute, FaultSpec


@dataclass
class _ActiveFault:
    fault_id: int
    spec: FaultSpec
    remaining: int  # -1 = forever


class FaultBook:
    """Faults in injection order; each matching request consumes one use of the first match."""

    def __init__(self) -> None:
        self._faults: list[_ActiveFault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def inject(self, spec: FaultSpec) -> int:
        with self._lock:
            fault_id = next(self._ids)
            self._faults.append(_ActiveFault(fault_id, spec, spec.times))
            return fault_id

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, route: FaultRoute, subject: str) -> FaultSpec | None:
        """The fault that applies to this request, if any, counting it as used."""
        with self._lock:
            for fault in self._faults:
                spec = fault.spec
                if spec.route != route or (spec.match is not None and spec.match not in subject):
                    continue
                if fault.remaining > 0:
                    fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return spec
            return None

    def active(self) -> list[dict[str, object]]:
        with self._lock:
            return [
                {"id": f.fault_id, "remaining": f.remaining, **f.spec.model_dump(mode="json")} for f in self._faults
            ]
