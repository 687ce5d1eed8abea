"""The voice server: one port for ``/ws`` sessions, the memory API, health and the web client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from websockets.asyncio.server import ServerConnection, serve

from agent.conversation import Conversation
from agent.flags import add_flags, flag
from agent.runtime import Agent
from speech.allocator import arena_count, release_free_memory
from speech.engines.factory import SpeechEngines
from speech.protocol import ProtocolError, ServerEvent, SessionReady, SessionStart, error_event
from speech.transport.admission import CLOSE_BAD_START, Admission
from speech.transport.http_api import HttpRoutes, bearer_token, split_target
from speech.transport.metrics import MeteredLink, ServerMetrics
from speech.transport.probes import Probes
from speech.transport.realtime.endpoint import PATH as REALTIME_PATH
from speech.transport.realtime.endpoint import serve_realtime
from speech.transport.ws_link import WebSocketLink
from speech.voice.link import ClientLink, LinkClosed
from speech.voice.session import SessionSettings, VoiceSession

log = logging.getLogger(__name__)


@dataclass
class ServerSettings:
    """Network, access and limits of the voice server."""

    host: str = field(default="127.0.0.1", metadata=flag("Address to listen on."))
    port: int = field(default=8765, metadata=flag("Port for WebSocket and HTTP."))
    auth_token: str | None = field(
        default=None, metadata=flag("Token every session and API call must present (env PARLEY_AUTH_TOKEN).",
                                     env="PARLEY_AUTH_TOKEN")
    )
    max_sessions: int = field(default=16, metadata=flag("Simultaneous sessions; more are refused."))
    max_message_bytes: int = field(default=1 << 20, metadata=flag("Largest WebSocket message accepted."))
    start_timeout_s: float = field(default=10.0, metadata=flag("Time a client has to send session.start."))
    idle_timeout_s: float = field(default=300.0, metadata=flag("Close a session silent for this long (seconds)."))
    max_turns_per_minute: int = field(default=30, metadata=flag("Turns a session may start per minute."))
    malloc_arena_max: int = field(
        default=2, metadata=flag("glibc malloc arenas at most, for the whole process, set by server.py at start "
                                  "(0: glibc's default, 8 per core). More arenas let memory fragment across "
                                  "the engines' threads (speech/allocator.py).")
    )
    trim_memory_every_s: float = field(
        default=60.0, metadata=flag("When a session closes, hand free memory back to the system (glibc "
                                     "malloc_trim) if the server is now idle or this long has passed; 0: never.")
    )
    drain_timeout_s: float = field(
        default=20.0, metadata=flag("On SIGTERM: refuse new sessions, let live turns finish for at most this "
                                     "long (seconds), save their memories, then exit.")
    )
    no_interruption: bool = field(default=False, metadata=flag("Half duplex: ignore the user while speaking."))
    enable_interruption: bool = field(default=True, metadata=flag("Accepted for CleanS2S compatibility (default)."))
    no_speculation: bool = field(
        default=False, metadata=flag("Do not start replies at short pauses (wait for the confirmed end of turn).")
    )
    suggest_followups: bool = field(
        default=False, metadata=flag("After each reply, suggest three follow-up questions (an extra LLM call).")
    )
    cleans2s_compat: bool = field(
        default=False, metadata=flag("Also serve CleanS2S's two-socket protocol for its web front end "
                                      "(docs/cleans2s.md).")
    )
    recv_host: str = field(default="127.0.0.1", metadata=flag("CleanS2S compat: address of the socket "
                                                               "browsers send on."))
    recv_port: int = field(default=9001, metadata=flag("CleanS2S compat: port browsers send on."))
    send_host: str = field(default="127.0.0.1", metadata=flag("CleanS2S compat: address of the socket "
                                                               "browsers receive on."))
    send_port: int = field(default=9002, metadata=flag("CleanS2S compat: port browsers receive on."))
    cleans2s_pair_window_s: float = field(
        default=2.0, metadata=flag("CleanS2S compat: a browser's two sockets must both arrive within this "
                                    "many seconds, or they are refused (docs/cleans2s.md, pairing).")
    )
    cleans2s_user_id: str | None = field(
        default=None, metadata=flag("CleanS2S compat: user id for every browser (one shared memory); "
                                     "by default each browser's uid is its user id.")
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of :class:`ServerSettings`, in their own group."""
    add_flags(parser, ServerSettings, "Server")


class ParleyServer:
    """Accepts connections, opens sessions, and keeps them apart."""

    def __init__(self, agent: Agent, engines: SpeechEngines, options: ServerSettings) -> None:
        self.agent = agent
        self.engines = engines
        self.options = options
        self.started_at = time.time()
        self.session_settings = SessionSettings(
            interruption=not options.no_interruption,
            speculative=not options.no_speculation,
            idle_timeout_s=options.idle_timeout_s,
            max_turns_per_minute=options.max_turns_per_minute,
            suggest_followups=options.suggest_followups,
        )
        self.metrics = ServerMetrics(self)
        self.admission = Admission(options.auth_token, options.max_sessions, self.metrics)
        self.probes = Probes(self)
        self.routes = HttpRoutes(agent.memory, options.auth_token,
                                 {**self.probes.routes(), "/metrics": self.metrics.route})
        self._background: set[asyncio.Task[Any]] = set()
        self.cleans2s: Any = None
        """The CleanS2S endpoint (``speech.transport.cleans2s.endpoint.CleanS2SEndpoint``) while it serves."""
        self.memory_trims = 0
        """How many times free memory was handed back (``/healthz`` ``process.memory_trims``)."""
        self._trimmed_at = time.monotonic()
        self._trimming = False

    @property
    def sessions(self) -> set[VoiceSession]:
        """Every open session, on every transport (kept by :attr:`admission`)."""
        return self.admission.sessions

    @property
    def draining(self) -> bool:
        """Set on SIGTERM (speech/transport/drain.py): new sessions are refused and /readyz answers 503."""
        return self.admission.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.admission.draining = value

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        # A failed preload is retried by the first recall; a failed trim by the next closed session.
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s failed: %s", task.get_name(), task.exception())

    def _start_in_background(self, name: str, work: Callable[[], object]) -> None:
        task = asyncio.create_task(asyncio.to_thread(work), name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _maybe_trim_memory(self) -> None:
        """After a session: give back what its buffers freed, once the server is idle or every interval.

        Without it, pages freed in the middle of glibc's heaps stay resident: the server's
        memory would follow its busiest moment instead of its load (README, "Security and limits").
        """
        every = self.options.trim_memory_every_s
        since = time.monotonic() - self._trimmed_at
        if every <= 0 or self._trimming or (self.sessions and since < every) or since < 1.0:
            return
        self._trimming = True

        def trim() -> None:
            try:
                if release_free_memory():
                    self.memory_trims += 1
            finally:
                self._trimmed_at, self._trimming = time.monotonic(), False

        self._start_in_background("trim-memory", trim)

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` reports."""
        return {
            "status": "ok",
            "engines": self.engines.describe(),
            **self.agent.describe(),
            "sessions": len(self.sessions),
            "uptime_s": round(time.time() - self.started_at, 1),
            "memory_writes": self.agent.memory_writes(),
            "process": {**process_figures(), "memory_trims": self.memory_trims},
        }

    async def handle(self, ws: ServerConnection) -> None:
        """One WebSocket connection, from session.start to close (``/v1/realtime``: the Realtime API's)."""
        if ws.request is not None and split_target(ws.request.path)[0] == REALTIME_PATH:
            await serve_realtime(self, ws)
            return
        link = WebSocketLink(ws, self.options.max_message_bytes)
        try:
            start = await asyncio.wait_for(link.first_message(), self.options.start_timeout_s)
        except TimeoutError:
            self.metrics.reject("no_start")
            await ws.close(CLOSE_BAD_START, "no session.start")
            return
        except ProtocolError as exc:
            self.metrics.reject(exc.code)
            await link.send_event(error_event(exc.code, exc.message))
            await ws.close(CLOSE_BAD_START, exc.code)
            return
        except LinkClosed:
            return
        token = start.token or (bearer_token(ws.request.headers) if ws.request else None)
        refusal = self.admission.check("ws", start.user_id, token)
        if refusal is not None:
            await link.send_event(error_event(refusal.code, refusal.message))
            await ws.close(refusal.close_code, refusal.code.replace("_", " "))
            return
        conv = self.agent.new_conversation(start.user_id)
        await self.run_session(MeteredLink(link, self.metrics.observer("ws", conv.session_id, start.user_id)),
                               start, conv, SessionReady(conv.session_id, self.engines.output_sample_rate))

    async def run_session(self, link: ClientLink, start: SessionStart, conv: Conversation,
                          ready: ServerEvent | None = None) -> None:
        """Run one admitted session on ``link`` until it ends (every transport comes here).

        ``ready``: the event that opens the session on this transport (``/ws``: ``session.ready``).
        """
        session = VoiceSession(link, self.agent, self.engines, start, conv, self.session_settings)
        with self.admission.holding(session):
            log.info("session %s opened for user %s", conv.session_id, start.user_id,
                     extra={"session_id": conv.session_id, "user_id": start.user_id})
            self._start_in_background("memory-preload", lambda: self.agent.warm_user(start.user_id))
            try:
                if ready is not None:
                    await link.send_event(ready)
                await session.run()
            except Exception:  # one session's failure must not touch the others
                log.exception("session %s failed", conv.session_id)
            finally:
                log.info("session %s closed", conv.session_id, extra={"session_id": conv.session_id})
        self._maybe_trim_memory()

    async def serve_forever(self, ready: asyncio.Event | None = None) -> None:
        """Listen until cancelled."""
        async with serve(self.handle, self.options.host, self.options.port,
                         process_request=self.routes.process_request,
                         # permessage-deflate shrank 20 ms PCM frames by only 20% for ~100 us of event-loop
                         # CPU each (50 per second per session, plus the reply audio): not worth it.
                         compression=None,
                         # Past 4x the limit the socket closes (1009); up to it, an error event explains.
                         max_size=4 * self.options.max_message_bytes) as server:
            sockets = list(server.sockets)
            if sockets:
                self.options.port = int(sockets[0].getsockname()[1])
            log.info("Parley listening on http://%s:%d/ (WebSocket /ws)", self.options.host, self.options.port)
            async with contextlib.AsyncExitStack() as extra:
                if self.options.cleans2s_compat:
                    from speech.transport.cleans2s.endpoint import CleanS2SEndpoint  # imports this module

                    self.cleans2s = CleanS2SEndpoint(self)
                    await extra.enter_async_context(self.cleans2s.serving())
                if ready is not None:
                    ready.set()
                await asyncio.Future()


def process_figures() -> dict[str, Any]:
    """Resident memory, malloc arenas, threads, open files and asyncio tasks: what a leak would make grow."""
    proc = psutil.Process()
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (called from a thread)
        tasks = -1
    return {"rss_mb": round(proc.memory_info().rss / 2**20, 1), "malloc_arenas": arena_count(),
            "threads": proc.num_threads(),
            "open_fds": proc.num_fds(), "tasks": tasks}



