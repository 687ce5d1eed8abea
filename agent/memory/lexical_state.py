"""One user's BM25 index as the store keeps it: built off the search path once the user is large.

Building BM25 over 100k memories takes seconds (reading the tokens from the database
and indexing them); a search that waited for it would miss every latency budget. So a
small user's index is built at once, and a large user's in a background thread while
searches go on without BM25 (dense, time window and neighbours still work) or with the
old index when it is a rebuild. Writes and deletions made during a build are replayed
onto the new index before it replaces the old one, so none is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from agent.memory.lexical import LexicalIndex

log = logging.getLogger(__name__)

SYNC_BUILD_MAX = 5000
"""Users with at most this many memories get their BM25 index built inside the search (well under 100 ms)."""

TokenRows = Iterable[tuple[list[int], list[str]]]


class UserLexical:
    """The BM25 index of one user plus the state of its (background) build. Callers hold the store lock."""

    def __init__(self) -> None:
        self.index: LexicalIndex | None = None
        self.building = False
        self._pending: list[tuple[bool, int, list[str]]] = []  # (added?, seq, tokens) during a build
        self.done = threading.Event()  # set whenever no build is running (tests and preload wait on it)
        self.done.set()

    def add(self, seq: int, tokens: list[str]) -> None:
        """Add one document to the index, and to the build in progress if any."""
        if self.index is not None:
            self.index.add(seq, tokens)
        if self.building:
            self._pending.append((True, int(seq), tokens))

    def remove(self, seq: int) -> None:
        """Remove one document from the index, and from the build in progress if any."""
        if self.index is not None:
            self.index.remove(seq)
        if self.building:
            self._pending.append((False, int(seq), []))

    def get(self, rows: Callable[[], TokenRows], size: int, lock: threading.RLock,
            sync_max: int = SYNC_BUILD_MAX) -> LexicalIndex | None:
        """The index to search now; None while a large user's first build runs."""
        if self.index is not None and not self.index.needs_rebuild():
            return self.index
        if size <= sync_max:
            self.index = LexicalIndex.from_rows(rows())
            return self.index
        if not self.building:
            self.building = True
            self.done.clear()
            threading.Thread(target=self._build, args=(rows, lock), name="memory-bm25", daemon=True).start()
        return self.index

    def _build(self, rows: Callable[[], TokenRows], lock: threading.RLock) -> None:
        built: LexicalIndex | None = None
        try:
            built = LexicalIndex.from_rows(rows())
        except Exception:  # the store was closed meanwhile, or the database went away: retried on next use
            log.warning("building a BM25 index failed; the next search retries", exc_info=True)
        with lock:
            if built is not None:
                for added, seq, tokens in self._pending:
                    if not added:
                        built.remove(seq)
                    elif not built.contains(seq):
                        built.add(seq, tokens)
                self.index = built
            self._pending = []
            self.building = False
            self.done.set()
