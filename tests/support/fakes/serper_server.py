"""A fake Serper search API (``POST /search`` with ``X-API-KEY``), with scripted faults."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.support.fakes.http_base import BackgroundServer, QuietHandler

FAKE_KEY = "test-serper-key"


@dataclass
class SearchReply:
    """One scripted search answer."""

    payload: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    delay_s: float = 0.0
    malformed: bool = False


def organic(*items: tuple[str, str, str]) -> dict[str, Any]:
    """A Serper payload with organic results given as (title, link, snippet)."""
    return {"organic": [{"title": t, "link": u, "snippet": s, "position": i + 1}
                        for i, (t, u, s) in enumerate(items)]}


class _Handler(QuietHandler):
    def do_POST(self) -> None:
        fake: FakeSerper = self.server.fake  # type: ignore[attr-defined]
        body = self.read_json()
        key = self.headers.get("X-API-KEY", "")
        reply = fake.next_reply(body, key)
        time.sleep(reply.delay_s)
        if self.path.rstrip("/") != "/search":
            self.send_json(404, {"message": "not found"})
        elif key != fake.api_key:
            self.send_json(401, {"message": "Unauthorized."})
        elif reply.status != 200:
            self.send_json(reply.status, {"message": f"scripted {reply.status}"})
        elif reply.malformed:
            self.send_raw(200, b'{"organic": [ {"title": ', "application/json")
        else:
            self.send_json(200, {"searchParameters": {"q": body.get("q"), "type": "search"}, **reply.payload})


class FakeSerper(BackgroundServer):
    """The fake search server and a record of queries."""

    def __init__(self, api_key: str = FAKE_KEY, port: int = 0) -> None:
        super().__init__(_Handler, port)
        self.api_key = api_key
        self.script: deque[SearchReply] = deque()
        self.default = SearchReply(organic(("Example", "https://example.com", "An example result.")))
        self.queries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def push(self, *replies: SearchReply) -> None:
        """Queue replies for the next searches, in order."""
        with self._lock:
            self.script.extend(replies)

    def next_reply(self, body: dict[str, Any], key: str) -> SearchReply:
        with self._lock:
            self.queries.append(body)
            return self.script.popleft() if self.script else self.default
