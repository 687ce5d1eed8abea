"""Pairing CleanS2S's two sockets without ever guessing (docs/cleans2s.md, "Sessions and pairing").

A browser talks to CleanS2S on two WebSockets: it sends on 9001 and receives on 9002, and the
9002 socket never says who it is. Pairing the oldest unpaired sockets of one address (as
before) let a receive socket opened first, by anyone behind the same address, get the next
browser's answers. So a pair is formed only when nothing else could be meant:

* The two sockets must come from the same place: the same ``?pair=`` key when the addresses
  carry one (a per-browser secret), else the same remote address and the same ``Origin``,
  ``User-Agent``, ``X-Forwarded-For`` and ``Forwarded`` headers (a browser sends the same on
  both sockets; every extra header only narrows the match, never widens it).
* Exactly one socket of each side is waiting there, and it stays so for ``settle_s`` after the
  second arrived (a browser opens both at the same moment). Any third socket in that time makes
  the place ambiguous: every socket waiting there is refused, and the browsers reconnect.
* A socket left without a partner for ``window_s`` is refused: a lone receive socket does not
  wait for the next browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

PAIR_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")
"""A ``?pair=`` key (used with ``fullmatch``): long enough to be a secret, short enough for a URL."""
IDENTIFYING_HEADERS = ("Origin", "User-Agent", "X-Forwarded-For", "Forwarded")

ALONE = "alone"
AMBIGUOUS = "ambiguous"
FULL = "full"
Outcome = ServerConnection | str
"""The partner socket, or why there is none: :data:`ALONE`, :data:`AMBIGUOUS` or :data:`FULL`."""


@dataclass(eq=False)
class _Waiting:
    ws: ServerConnection
    side: str
    arrived: float
    outcome: asyncio.Future[Outcome]


@dataclass
class _Place:
    """The sockets waiting at one place (one key), by side."""

    waiting: dict[str, list[_Waiting]] = field(default_factory=lambda: {"recv": [], "send": []})
    timer: asyncio.TimerHandle | None = None


def place_key(ws: ServerConnection, pair_key: str | None) -> str:
    """Where a socket comes from, as far as pairing can tell."""
    if pair_key is not None:
        return f"pair:{pair_key}"
    remote = ws.remote_address
    address = str(remote[0]) if isinstance(remote, tuple) and remote else str(remote)
    headers = ws.request.headers if ws.request is not None else None
    extra = [headers.get(name, "") if headers is not None else "" for name in IDENTIFYING_HEADERS]
    return "\x00".join(["addr", address, *extra])


class Pairing:
    """Matches receive (9001) and send (9002) sockets, one pair at a time per place."""

    def __init__(self, settle_s: float, window_s: float, max_waiting: int) -> None:
        self.settle_s = settle_s
        self.window_s = window_s
        self.max_waiting = max_waiting
        self._places: dict[str, _Place] = {}
        self.refused: dict[str, int] = {ALONE: 0, AMBIGUOUS: 0, FULL: 0}
        """How many sockets were refused, by reason (for tests and logs)."""

    @property
    def waiting(self) -> int:
        """Sockets waiting for a partner now."""
        return sum(len(v) for place in self._places.values() for v in place.waiting.values())

    async def pair(self, side: str, key: str, ws: ServerConnection) -> Outcome:
        """Wait for this socket's partner (``side`` is ``recv`` or ``send``); never longer than ``window_s``."""
        if self.waiting >= self.max_waiting:
            self.refused[FULL] += 1
            return FULL
        place = self._places.setdefault(key, _Place())
        entry = _Waiting(ws, side, time.monotonic(), asyncio.get_running_loop().create_future())
        place.waiting[side].append(entry)
        self._review(key)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(entry.outcome), self.window_s)
        except TimeoutError:
            outcome = entry.outcome.result() if entry.outcome.done() else ALONE
        finally:
            self._leave(key, entry)
        if isinstance(outcome, str):
            self.refused[outcome] += 1
        return outcome

    def _leave(self, key: str, entry: _Waiting) -> None:
        place = self._places.get(key)
        if place is None:
            return
        with contextlib.suppress(ValueError):
            place.waiting[entry.side].remove(entry)
        if not entry.outcome.done():
            entry.outcome.set_result(ALONE)
        if not any(place.waiting.values()):
            if place.timer is not None:
                place.timer.cancel()
            del self._places[key]
        else:
            self._review(key)

    def _review(self, key: str) -> None:
        """After a change at ``key``: refuse everyone if it is ambiguous, or start settling a unique pair."""
        place = self._places[key]
        for side, entries in place.waiting.items():  # a socket that closed while waiting is no candidate
            place.waiting[side] = [e for e in entries if e.ws.state is State.OPEN and not e.outcome.done()]
        recv, send = place.waiting["recv"], place.waiting["send"]
        if place.timer is not None:
            place.timer.cancel()
            place.timer = None
        if len(recv) > 1 or len(send) > 1:
            for entry in recv + send:
                entry.outcome.set_result(AMBIGUOUS)
            recv.clear()
            send.clear()
        elif recv and send:
            place.timer = asyncio.get_running_loop().call_later(self.settle_s, self._settle, key)

    def _settle(self, key: str) -> None:
        """``settle_s`` after the second socket came and no third: pair the two."""
        place = self._places.get(key)
        if place is None:
            return
        place.timer = None
        recv, send = place.waiting["recv"], place.waiting["send"]
        if len(recv) != 1 or len(send) != 1:
            return
        a, b = recv.pop(), send.pop()
        if a.ws.state is not State.OPEN or b.ws.state is not State.OPEN:
            for entry in (a, b):  # one closed meanwhile: the other may still find its own partner
                if entry.ws.state is State.OPEN:
                    place.waiting[entry.side].append(entry)
            return
        a.outcome.set_result(b.ws)
        b.outcome.set_result(a.ws)
