"""Loopback services: small ASGI apps a run or a test serves next to itself.

Modules: ``serving`` (serve any ASGI app on loopback with uvicorn and wait until it listens,
on a thread of its own or on the running loop) and ``callbacks`` (the receiver of the API's
completion callbacks: signed per-job URLs, durable storage, in-process wake-ups), and
``body_limit`` (the cap on a request body every receiver applies, 413 beyond it). The
simulator serves itself with ``serving`` too; nothing here imports the API client.
"""

from stemcat.services.serving import LoopbackServer, ServiceStartError

__all__ = ["LoopbackServer", "ServiceStartError"]
