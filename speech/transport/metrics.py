"""Prometheus ``/metrics``: per-turn stage latencies, turn and error counters, live gauges.

Nothing in the session or the reply knows about this module. Every session's link is
wrapped in a :class:`MeteredLink`, which reads the events the session sends anyway
(``route``, ``response.done`` with its ``metrics``, ``error`` with its ``code``): the turn
events of docs/protocol.md are the source, so a figure here is the figure the client saw.
Live values (sessions, the memory-write backlog, saved and failed writes) are read at
scrape time from the objects that own them.

Each server has its own registry, so several servers in one process (the tests) do not
mix their series. Metric names and labels are listed in README "Running in production".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from websockets.datastructures import Headers
from websockets.http11 import Response

from speech.protocol import ErrorEvent, ResponseDone, Route, ServerEvent
from speech.transport.http_api import error_response
from speech.voice.link import ClientInput, ClientLink

if TYPE_CHECKING:
    from speech.transport.ws_server import ParleyServer

log = logging.getLogger(__name__)
turn_log = logging.getLogger("parley.turn")

STAGES = ("vad_end", "asr", "memory", "route", "retrieval", "llm_ttft", "tts_first_audio", "e2e")
"""The per-turn stages that ``response.done`` reports, in milliseconds (speech/voice/reply.py ``_metrics``)."""

# Seconds. Dense where voice latency lives (0.2-3 s), wide enough for a slow web search.
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)

class _LiveValues(Collector):
    """Gauges and counters whose values live elsewhere: read at scrape time, never copied."""

    def __init__(self, server: ParleyServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        writes_now = self._server.agent.memory_writes()
        sessions = GaugeMetricFamily("parley_active_sessions", "Sessions open now (all transports).")
        sessions.add_metric([], len(self._server.sessions))
        backlog = GaugeMetricFamily("parley_memory_write_backlog",
                                    "Turns queued for long-term memory, not yet written.")
        backlog.add_metric([], writes_now["pending"])
        writes = CounterMetricFamily("parley_memory_writes", "Turns written to long-term memory, by result.",
                                     labels=["result"])
        writes.add_metric(["saved"], writes_now["saved"])
        writes.add_metric(["failed"], writes_now["failed"])
        draining = GaugeMetricFamily("parley_draining", "1 while the server drains after SIGTERM.")
        draining.add_metric([], 1.0 if self._server.draining else 0.0)
        yield from (sessions, backlog, writes, draining)


class ServerMetrics:
    """Every Parley series of one server, in its own registry."""

    def __init__(self, server: ParleyServer) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "parley_turn_stage_seconds", "Time of one stage of a turn (stage: vad_end, asr, memory, route, "
            "retrieval, llm_ttft, tts_first_audio, e2e).", ["stage", "route", "transport"],
            buckets=STAGE_BUCKETS, registry=self.registry)
        self.turns = Counter("parley_turns", "Turns answered (or cut short by the user).",
                             ["route", "transport", "input"], registry=self.registry)
        self.interruptions = Counter("parley_interruptions", "Replies the user interrupted after hearing part.",
                                     ["transport"], registry=self.registry)
        self.premature = Counter(
            "parley_premature_turn_ends", "Ends of turn confirmed too early: the user went on speaking before "
            "hearing the answer, so the turn merged into the next one.", ["transport"], registry=self.registry)
        self.errors = Counter("parley_errors", "Error events sent to clients, by code.", ["code", "transport"],
                              registry=self.registry)
        self.rejected = Counter("parley_rejected_connections", "Sessions refused before they started, by reason.",
                                ["reason", "transport"], registry=self.registry)
        self.registry.register(_LiveValues(server))
        # process_resident_memory_bytes, CPU seconds, open fds: the standard process series (Linux /proc).
        ProcessCollector(registry=self.registry)

    def reject(self, reason: str, transport: str = "ws") -> None:
        """Count a connection refused before its session started."""
        self.rejected.labels(reason, transport).inc()

    def observer(self, transport: str, session_id: str = "", user_id: str = "") -> TurnObserver:
        """A reader of one session's outgoing events."""
        return TurnObserver(self, transport, session_id, user_id)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    async def route(self, authorized: bool) -> Response:
        """``GET /metrics``: guarded like ``/api/*`` when a token is set."""
        if not authorized:
            return error_response(401, "unauthorized", "missing or invalid token")
        # ~20 ms for the full exposition (bench.metrics_overhead): off the event loop, which paces audio.
        body = await asyncio.to_thread(self.exposition)
        headers = Headers([("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store")])
        return Response(200, "OK", headers, body)


class TurnObserver:
    """Turns one session's outgoing events into metric updates and one log record per turn."""

    def __init__(self, metrics: ServerMetrics, transport: str, session_id: str, user_id: str) -> None:
        self._metrics = metrics
        self.transport = transport
        self.session_id = session_id
        self.user_id = user_id
        self._routes: dict[str, str] = {}
        """turn_id -> route, from the ``route`` event until the turn's ``response.done``."""

    def outgoing(self, event: ServerEvent) -> None:
        """Look at one event on its way to the client (never raises: metrics must not break a turn)."""
        try:
            if isinstance(event, Route):
                self._routes[event.turn_id] = event.route
                if len(self._routes) > 64:  # turns that never ended (cancelled speculation): forget the oldest
                    self._routes.pop(next(iter(self._routes)))
            elif isinstance(event, ErrorEvent):
                self._metrics.errors.labels(event.code, self.transport).inc()
            elif isinstance(event, ResponseDone):
                self._on_done(event)
        except Exception as exc:  # a metrics bug is logged, the session goes on
            log.warning("metrics: could not read an outgoing event (%s)", type(exc).__name__)

    def _on_done(self, ev: ResponseDone) -> None:
        turn_id = ev.turn_id
        route = self._routes.pop(turn_id, "") or "none"
        timings = ev.metrics or {}
        m = self._metrics
        if ev.merged:
            m.premature.labels(self.transport).inc()
            return
        spoken = "asr" in timings or "vad_end" in timings
        m.turns.labels(route, self.transport, "voice" if spoken else "text").inc()
        if ev.interrupted:
            m.interruptions.labels(self.transport).inc()
        for stage in STAGES:
            value = timings.get(stage)
            if isinstance(value, int | float) and value >= 0:
                m.stage_seconds.labels(stage, route, self.transport).observe(value / 1000)
        turn_log.info("turn %s done: route=%s interrupted=%s timings=%s", turn_id, route,
                      ev.interrupted, timings,
                      extra={"session_id": self.session_id, "turn_id": turn_id, "user_id": self.user_id,
                             "route": route, "timings": timings, "transport": self.transport,
                             "interrupted": ev.interrupted})


class MeteredLink:
    """A session's link (``/ws``, a CleanS2S pair, ...) whose outgoing events the metrics read.

    Everything is passed through unchanged, so the session cannot tell the difference.
    """

    def __init__(self, link: ClientLink, observer: TurnObserver) -> None:
        self._link = link
        self.observer = observer

    async def receive(self) -> ClientInput:
        """The wrapped link's next input."""
        return await self._link.receive()

    async def send_event(self, event: ServerEvent) -> None:
        """Observe the event, then send it."""
        self.observer.outgoing(event)
        await self._link.send_event(event)

    async def send_audio(self, pcm: bytes) -> None:
        """Send audio (not observed)."""
        await self._link.send_audio(pcm)

    async def close(self, code: int, reason: str) -> None:
        """Close the wrapped link."""
        await self._link.close(code, reason)
