"""Health probes on the server's port: what a load balancer and an orchestrator ask.

* ``GET /healthz`` is **liveness**: the event loop answers. Without the token (when one is
  set) it says only ``{"status": "ok"}``; with it, or when no token is configured, it also
  carries the details (models, tools, sessions, memory writes, process figures) that used to
  be public. Model names, tool lists and counters tell an outsider what to attack and how busy
  the server is, so they sit behind the same token as ``/api/*``.
* ``GET /readyz`` is **readiness**: 200 when this instance should get new sessions (engines
  loaded, memory store answering a query, PostgreSQL included in shared mode, not draining),
  else 503. It is public, and says only which check failed, never why in detail (an error
  text could name a host or a user).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from websockets.http11 import Response

from speech.transport.http_api import json_response

if TYPE_CHECKING:
    from speech.transport.ws_server import ParleyServer

log = logging.getLogger(__name__)

MEMORY_PING_TIMEOUT_S = 2.0
"""A memory store slower than this to answer ``SELECT 1`` counts as unreachable."""
READINESS_CACHE_S = 1.0
"""Probes closer together than this share one check, so a flood of probes cannot load the database."""

ProbeRoute = Callable[[bool], Awaitable[Response]]
"""An HTTP route that is told whether the caller presented the token (or none is needed)."""


class Probes:
    """Liveness and readiness of one :class:`~speech.transport.ws_server.ParleyServer`."""

    def __init__(self, server: ParleyServer) -> None:
        self._server = server
        self._checked_at = -1e9
        self._checks: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def routes(self) -> dict[str, ProbeRoute]:
        """Path -> route, for :class:`~speech.transport.http_api.HttpRoutes`."""
        return {"/healthz": self.liveness, "/readyz": self.readiness}

    async def liveness(self, authorized: bool) -> Response:
        """``/healthz``: tiny for everyone, detailed for the token holder."""
        if not authorized:
            return json_response(200, {"status": "ok"})
        return json_response(200, self._server.health())

    async def readiness(self, authorized: bool) -> Response:
        """``/readyz``: 200 ready, 503 not ready (or draining), with the checks by name."""
        checks = await self.check()
        ready = all(value == "ok" for value in checks.values())
        status = "ready" if ready else ("draining" if checks.get("draining") != "ok" else "not_ready")
        return json_response(200 if ready else 503, {"status": status, "checks": checks})

    async def check(self) -> dict[str, str]:
        """Every readiness check: ``"ok"`` or a one-word reason."""
        async with self._lock:
            if time.monotonic() - self._checked_at >= READINESS_CACHE_S:
                self._checks = {"engines": self._engines(), "memory": await self._memory()}
                self._checked_at = time.monotonic()
            checks = dict(self._checks)
        checks["draining"] = "draining" if self._server.draining else "ok"
        return checks

    def _engines(self) -> str:
        engines = self._server.engines
        loaded = engines is not None and all(getattr(engines, part, None) is not None for part in ("vad", "asr", "tts"))
        return "ok" if loaded else "not_loaded"

    async def _memory(self) -> str:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._server.agent.ping_memory), MEMORY_PING_TIMEOUT_S)
        except TimeoutError:
            log.warning("readiness: the memory store did not answer within %.1f s", MEMORY_PING_TIMEOUT_S)
            return "unreachable"
        except Exception as exc:  # any failure means "do not send users here"; the type is enough to log
            log.warning("readiness: the memory store failed a query (%s)", type(exc).__name__)
            return "unreachable"
        return "ok"
