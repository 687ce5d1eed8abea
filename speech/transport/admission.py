"""Who may open a session, on every transport: one copy of the token, user id, draining and limit checks.

``/ws``, the CleanS2S sockets and any later transport ask :meth:`Admission.check` before they
start a :class:`~speech.voice.session.VoiceSession`, and keep it in :meth:`Admission.holding`
while it runs, so the session limit, ``/healthz``, ``/metrics`` and the SIGTERM drain see every
session whatever carried it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.ids import InvalidIdError, validate_user_id
from speech.transport.http_api import token_matches

if TYPE_CHECKING:
    from speech.transport.metrics import ServerMetrics
    from speech.voice.session import VoiceSession

CLOSE_BAD_START = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY = 4429
CLOSE_DRAINING = 4503


@dataclass(frozen=True)
class Refusal:
    """Why a session may not start: the ``error`` code and message for the client, and the close code."""

    code: str
    message: str
    close_code: int


UNAUTHORIZED = Refusal("unauthorized", "missing or invalid token", CLOSE_UNAUTHORIZED)
DRAINING = Refusal("server_draining", "the server is shutting down; reconnect", CLOSE_DRAINING)
FULL = Refusal("too_many_sessions", "the server is full; try again later", CLOSE_TOO_MANY)


class Admission:
    """The server's open sessions and the rules for opening one."""

    def __init__(self, auth_token: str | None, max_sessions: int, metrics: ServerMetrics) -> None:
        self.auth_token = auth_token
        self.max_sessions = max_sessions
        self.metrics = metrics
        self.sessions: set[VoiceSession] = set()
        """Every open session, on every transport."""
        self.draining = False
        """Set on SIGTERM (speech/transport/drain.py): new sessions are refused and /readyz answers 503."""
        self.starting = 0
        """Admitted connections still setting up (Realtime's first ``session.update`` phase): they hold a place."""

    def token_ok(self, token: str | None) -> bool:
        """Whether ``token`` is the server's (always, when none is configured)."""
        return token_matches(self.auth_token, token)

    def check(self, transport: str, user_id: str, token: str | None = None, *,
              token_checked: bool = False) -> Refusal | None:
        """``None`` if a session for ``user_id`` may start now, else the refusal (counted in ``/metrics``).

        ``token_checked``: the transport already checked the token (CleanS2S does, at the upgrade).
        """
        refusal = self._refusal(user_id, None if token_checked else token, token_checked)
        if refusal is not None:
            self.metrics.reject(refusal.code, transport)
        return refusal

    def _refusal(self, user_id: str, token: str | None, token_checked: bool) -> Refusal | None:
        if not token_checked and not self.token_ok(token):
            return UNAUTHORIZED
        try:
            validate_user_id(user_id)
        except InvalidIdError as exc:
            return Refusal("invalid_user_id", str(exc), CLOSE_BAD_START)
        if self.draining:
            return DRAINING
        if len(self.sessions) + self.starting >= self.max_sessions:
            return FULL
        return None

    @contextlib.contextmanager
    def reserving(self) -> Iterator[None]:
        """Hold a place for an admitted connection until its session is held (:meth:`holding`).

        Enter it right after :meth:`check` (no ``await`` between), and call ``run_session`` right after
        the block (no ``await`` between either): the place passes to the session without a moment free.
        """
        self.starting += 1
        try:
            yield
        finally:
            self.starting -= 1

    @contextlib.contextmanager
    def holding(self, session: VoiceSession) -> Iterator[VoiceSession]:
        """Count ``session`` as open for the duration of the block."""
        self.sessions.add(session)
        try:
            yield session
        finally:
            self.sessions.discard(session)
