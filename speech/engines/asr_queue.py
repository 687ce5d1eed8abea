"""One recognizer shared by every session: one decode at a time, end-of-speech decodes first.

Decodes on a 2-core CPU only slow each other down when run together, so they run one
at a time on a single worker thread. What waits is ordered: a decode of speech that has
ended (the user is waiting for the answer) goes before a partial decode of speech still
going on, whichever session asked first; partials are refused outright while anything
else waits (the next one will carry newer audio anyway). A request whose caller gave up
(its asyncio future was cancelled: the user went on speaking, the session closed) is
skipped when its turn comes, so stale work never delays a live turn. A decode that has
started runs to the end: CTranslate2 cannot be interrupted.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

FINAL = 0
"""Priority of a decode of speech that has ended: someone is waiting for its answer."""
PARTIAL = 1
"""Priority of a decode of speech still going on: only when nothing else waits."""


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    call: Callable[[], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    queued_at: float = field(compare=False, default=0.0)


@dataclass
class QueueStats:
    """Counters for /healthz and the benches."""

    decodes: int = 0
    skipped_stale: int = 0
    """Requests withdrawn before they started (never decoded)."""
    refused_partials: int = 0
    """Partial decodes refused because the recognizer was busy."""
    wait_ms_max: float = 0.0


class RecognizerQueue:
    """Runs recognizer calls one at a time on its own thread, by priority then arrival."""

    def __init__(self, name: str = "asr") -> None:
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._busy = False
        self.stats = QueueStats()
        self._thread = threading.Thread(target=self._work, name=f"{name}-queue", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A decode is running or waiting."""
        with self._cv:
            return self._busy or bool(self._heap)

    async def run(self, call: Callable[[], Any], priority: int = FINAL) -> Any:
        """Run ``call()`` on the recognizer thread and return its result (or raise its exception).

        Cancelling the awaiting task withdraws a request that has not started yet.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._cv:
            heapq.heappush(self._heap, _Job(priority, next(self._seq), call, future, loop, time.perf_counter()))
            self._cv.notify()
        return await future

    async def try_partial(self, call: Callable[[], Any]) -> tuple[bool, Any]:
        """Run a partial decode only if the recognizer is free right now: (ran?, result)."""
        with self._cv:
            if self._busy or self._heap:
                self.stats.refused_partials += 1
                return False, None
        return True, await self.run(call, PARTIAL)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap:
                    self._cv.wait()
                job = heapq.heappop(self._heap)
                if job.future.cancelled():  # read from another thread: a stale flag only costs one decode
                    self.stats.skipped_stale += 1
                    continue
                self._busy = True
            wait_ms = (time.perf_counter() - job.queued_at) * 1000
            try:
                result, error = job.call(), None
            except Exception as exc:  # handed to the caller
                result, error = None, exc
            with self._cv:
                self._busy = False
                self.stats.decodes += 1
                self.stats.wait_ms_max = max(self.stats.wait_ms_max, wait_ms)
            try:
                job.loop.call_soon_threadsafe(_settle, job.future, result, error)
            except RuntimeError:  # the caller's loop is closed: nobody waits for this
                log.debug("recognizer result dropped: event loop closed")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while it ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
