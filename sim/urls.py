"""Building the file URLs the simulator hands out (stems of a task, the mix of an audio)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from stemcat.sim.clock import SimClock
from stemcat.sim.signing import NO_EXPIRY, FileToken, sign
from stemcat.sim.stems import FILE_LABELS

TASK_REF_PREFIX: Final[str] = "t"
MIX_REF_PREFIX: Final[str] = "a"


@dataclass(frozen=True)
class FileUrls:
    """Signs file URLs; with a TTL, each call hands out URLs valid for `ttl_s` sim seconds from now."""

    base_url: str
    secret: bytes
    clock: SimClock
    ttl_s: float | None

    def stem_url(self, task_id: str, name: str) -> str:
        """URL of one file (`vocals`, …, `instrumental`) of a separation task."""
        return self._url(TASK_REF_PREFIX + task_id, FILE_LABELS[name])

    def mix_url(self, audio_id: str) -> str:
        """URL of the original song (the mix) of an audio variation; it never expires."""
        return self._url(MIX_REF_PREFIX + audio_id, FILE_LABELS["mix"], expiring=False)

    def _url(self, ref: str, label: str, *, expiring: bool = True) -> str:
        expires = NO_EXPIRY
        if expiring and self.ttl_s is not None:
            expires = math.ceil(self.clock.epoch_ms() / 1000 + self.ttl_s)
        segment = sign(self.secret, FileToken(ref=ref, expires_epoch_s=expires), label)
        return f"{self.base_url}/files/{segment}/{label}.mp3"
