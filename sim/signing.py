"""File URL tokens: an opaque reference, an optional expiry and an HMAC over both."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

NO_EXPIRY = 0


@dataclass(frozen=True)
class FileToken:
    """What a file URL points at: `ref` names a separation task (t…) or a mix (a…)."""

    ref: str
    expires_epoch_s: int  # NO_EXPIRY (0) = valid for the whole retention


def _signature(secret: bytes, ref: str, label: str, expires_epoch_s: int) -> str:
    message = f"{ref}/{label}/{expires_epoch_s}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def sign(secret: bytes, token: FileToken, label: str) -> str:
    """The path segment that authorises downloading `label` of `token.ref` until its expiry."""
    sig = _signature(secret, token.ref, label, token.expires_epoch_s)
    return f"{token.ref}.{token.expires_epoch_s}.{sig}"


def verify(secret: bytes, segment: str, label: str) -> FileToken | None:
    """The token if the segment was signed by us for this label, else None."""
    parts = segment.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    ref, expires, sig = parts
    expected = _signature(secret, ref, label, int(expires))
    if not hmac.compare_digest(sig, expected):
        return None
    return FileToken(ref=ref, expires_epoch_s=int(expires))
