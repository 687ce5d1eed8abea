"""One user's search columns as the store keeps them: loaded off the search path once the user is large.

Reading the columns of 100k memories takes about 0.1 s on an idle machine and several times
that beside a BM25 build; a user's first search must stay well under 500 ms. So a small
user's columns are read at once, and a large user's in a background thread while searches
read the same fields from the database (:class:`SQLColumns`, as fusion did before the
cache). Changes made during the load are replayed onto the loaded columns before they are
used, so none is lost (every change is idempotent: replaying one the load already saw is harmless).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from agent.memory.columns import Candidates, RecordColumns
from agent.memory.records import RecordStore

log = logging.getLogger(__name__)

class ColumnReader(Protocol):
    """What fusion and the time window ask of a user's columns."""

    def usable(self, seqs: Iterable[int], include_superseded: bool, kinds: Sequence[str] | None) -> Candidates:
        """Those of ``seqs`` that exist and pass the filters, ascending."""

    def in_window(self, start: float, end: float, limit: int) -> list[int]:
        """Seqs created in ``[start, end)``, newest first, at most ``limit``."""


class SQLColumns:
    """The same answers as :class:`RecordColumns`, read from the database (while the columns load)."""

    def __init__(self, records: RecordStore, user_id: str) -> None:
        self.records = records
        self.user_id = user_id

    def usable(self, seqs: Iterable[int], include_superseded: bool, kinds: Sequence[str] | None) -> Candidates:
        """Those of ``seqs`` that exist and pass the filters, ascending."""
        rows = zip(*self.records.columns_for(self.user_id, sorted({int(s) for s in seqs})), strict=True)
        keep = sorted(r for r in rows if (include_superseded or not r[3]) and (not kinds or r[1] in kinds))
        return Candidates(seqs=[r[0] for r in keep], created=[r[2] for r in keep], kinds=[r[1] for r in keep])

    def in_window(self, start: float, end: float, limit: int) -> list[int]:
        """Seqs created in ``[start, end)``, newest first, at most ``limit``."""
        return self.records.seqs_in_window(self.user_id, start, end, limit)


class UserColumns:
    """A user's :class:`RecordColumns` plus the state of their (background) load. Callers hold the user's lock."""

    def __init__(self) -> None:
        self.columns: RecordColumns | None = None
        self.building = False
        self._pending: list[Callable[[RecordColumns], None]] = []  # changes made during a load
        self.done = threading.Event()  # set whenever no load is running
        self.done.set()

    @property
    def active(self) -> bool:
        """Whether changes must be recorded (the columns are loaded or loading)."""
        return self.columns is not None or self.building

    def _apply(self, change: Callable[[RecordColumns], None]) -> None:
        if self.columns is not None:
            change(self.columns)
        if self.building:
            self._pending.append(change)

    def add(self, seqs: Sequence[int], kinds: Sequence[str], created: Sequence[float],
            superseded: Sequence[bool] | None = None) -> None:
        """New rows (see :meth:`RecordColumns.add`)."""
        self._apply(lambda c: c.add(seqs, kinds, created, superseded))

    def remove(self, seqs: Sequence[int]) -> None:
        """Deleted rows."""
        self._apply(lambda c: c.remove(seqs))

    def set_superseded(self, seqs: Sequence[int], superseded: bool) -> None:
        """Rows superseded by a newer fact, or current again."""
        self._apply(lambda c: c.set_superseded(seqs, superseded))

    def replace_superseded(self, seqs: Sequence[int]) -> None:
        """The full set of superseded rows, read anew."""
        self._apply(lambda c: c.replace_superseded(seqs))

    def get(self, records: RecordStore, user_id: str, size: int, lock: threading.RLock,
            sync_max: int) -> ColumnReader:
        """The columns to search now: in memory, or the database while a large user's load runs.

        Large is more than ``sync_max`` memories (the store's ``lexical_sync_max``, as for BM25).
        """
        if self.columns is not None:
            return self.columns
        if size <= sync_max:
            self.columns = RecordColumns.load(records, user_id)
            return self.columns
        if not self.building:
            self.building = True
            self.done.clear()
            threading.Thread(target=self._load, args=(records, user_id, lock), name="memory-columns",
                             daemon=True).start()
        return SQLColumns(records, user_id)

    def _load(self, records: RecordStore, user_id: str, lock: threading.RLock) -> None:
        loaded: RecordColumns | None = None
        try:
            loaded = RecordColumns.load(records, user_id)
        except Exception:  # the store was closed meanwhile, or the database went away: retried on next use
            log.warning("loading a user's search columns failed; the next search retries", exc_info=True)
        with lock:
            if loaded is not None:
                for change in self._pending:
                    change(loaded)
                self.columns = loaded
            self._pending = []
            self.building = False
            self.done.set()
