"""Graceful shutdown: what ``server.py`` does on SIGTERM before it exits.

1. Refuse new sessions (``server_draining``, close 4503) and answer ``/readyz`` with 503, so a
   load balancer sends new users to another instance.
2. Let every turn that is being transcribed or answered finish, its audio included, for at
   most ``--drain_timeout_s``. Users who are only connected are not waited for.
3. Close the remaining sessions (1001, "going away"); a reply still running after the
   deadline is cut and recorded with what was heard, as at a barge-in.
4. The caller then closes the agent, which flushes the memory writer: every turn answered is
   saved before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from speech.transport.ws_server import ParleyServer

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
POLL_S = 0.05


@dataclass(frozen=True)
class DrainReport:
    """What a drain found and did."""

    busy_at_start: int
    """Sessions with a turn in progress when the drain began."""
    cut: int
    """Sessions still busy at the deadline (their turns were cut)."""
    seconds: float


def busy_sessions(server: ParleyServer) -> int:
    """Sessions whose current turn is being transcribed or answered."""
    return sum(1 for session in list(server.sessions) if session.busy)


async def drain(server: ParleyServer, timeout_s: float) -> DrainReport:
    """Stop taking sessions, wait for live turns (bounded by ``timeout_s``), then close every session."""
    started = time.monotonic()
    server.draining = True
    busy_at_start = busy_sessions(server)
    log.info("draining: refusing new sessions; %d of %d sessions have a turn in progress (waiting up to %.0f s)",
             busy_at_start, len(server.sessions), timeout_s)
    deadline = started + max(0.0, timeout_s)
    # A turn's state is spread over its session's tasks (transcription, reply, playout), with no one
    # event for "every session is idle"; a 50 ms poll for a few seconds once per shutdown costs nothing.
    while busy_sessions(server) and time.monotonic() < deadline:  # noqa: ASYNC110 - see above
        await asyncio.sleep(POLL_S)
    cut = busy_sessions(server)
    if cut:
        log.warning("draining: %d turns still running after %.0f s are cut", cut, timeout_s)
    for session in list(server.sessions):
        await session.link.close(CLOSE_GOING_AWAY, "server shutting down")
    # Each session's own clean-up (recording an interrupted reply, returning its VAD model) runs
    # in its handler once the socket is closed; give it a moment.
    close_by = time.monotonic() + 5.0
    while server.sessions and time.monotonic() < close_by:  # noqa: ASYNC110 - as above
        await asyncio.sleep(POLL_S)
    report = DrainReport(busy_at_start, cut, round(time.monotonic() - started, 2))
    log.info("drained in %.2f s (%d turns waited for, %d cut)", report.seconds, busy_at_start - cut, cut)
    return report
