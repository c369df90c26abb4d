"""Delivering task callbacks: POST JSON to the task's callBackUrl, loopback hosts only."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryResult:
    attempts: int
    delivered: bool


def is_loopback_url(url: str) -> bool:
    """True only for http(s) URLs on 127.0.0.0/8, ::1 or localhost: the simulator never calls out."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return False
    if parsed.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(parsed.host).is_loopback
    except ValueError:
        return False  # a DNS name: resolving it would already be traffic off the machine


async def deliver(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], *, attempts: int, wait_s: float, timeout_s: float
) -> DeliveryResult:
    """Try up to `attempts` POSTs; delivered means a 2xx answer."""
    if not is_loopback_url(url):
        return DeliveryResult(attempts=0, delivered=False)
    for attempt in range(1, attempts + 1):
        try:
            response = await client.post(url, json=payload, timeout=timeout_s)
            if response.is_success:
                return DeliveryResult(attempts=attempt, delivered=True)
        except httpx.HTTPError as exc:
            logger.debug("callback attempt %d failed: %s", attempt, type(exc).__name__)
        if attempt < attempts:
            await asyncio.sleep(wait_s)
    return DeliveryResult(attempts=attempts, delivered=False)
