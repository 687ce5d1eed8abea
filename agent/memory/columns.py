"""What fusion reads of each of one user's memories (kind, date, superseded or not), kept in memory.

Fusion scores about 150 candidates per search and keeps the best ``k``. Reading all of
them from the database (full rows, metadata JSON parsed, one record object each) cost
about 1 ms of a 5 ms search at 100k memories, and a window query's newest-first scan
more. So each cached user keeps three small columns in seq order (18 bytes a memory: 18 MB
at a million), and only the final ``k`` records are read from the database.

The columns are a cache like the FAISS and BM25 indexes: loaded from the records on a
user's first search, changed by the store's own writes under the user's lock (inserts,
supersessions, deletions), brought up to date by the shared-mode catch-up, and dropped
with the user's other indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class ColumnSource(Protocol):
    """The record-store reads the columns are loaded from (see :class:`~agent.memory.sql_reads.SQLReads`)."""

    def iter_columns(
        self, user_id: str, batch: int = 50000
    ) -> Iterable[tuple[list[int], list[str], list[float], list[bool]]]:
        """``(seqs, kinds, created_at, superseded?)`` in seq order, in batches."""

    def columns_for(self, user_id: str, seqs: Sequence[int]) -> tuple[list[int], list[str], list[float], list[bool]]:
        """The same four columns for these seqs (missing ones skipped)."""


@dataclass(frozen=True)
class Candidates:
    """The usable ones of some candidate seqs, ascending, with their dates and kinds."""

    seqs: list[int]
    created: list[float]
    kinds: list[str]


class RecordColumns:
    """Kind, creation time and superseded flag of every memory of one user, by seq. Callers hold the user's lock."""

    def __init__(self) -> None:
        self._seqs = np.zeros(0, np.int64)
        self._created = np.zeros(0, np.float64)
        self._kind = np.zeros(0, np.int16)
        self._n = 0  # rows in use; the arrays beyond are spare capacity for appends
        self._kind_names: list[str] = []
        self._kind_codes: dict[str, int] = {}
        self._superseded: set[int] = set()

    @classmethod
    def load(cls, source: ColumnSource, user_id: str) -> RecordColumns:
        """Read the user's columns from the records (one pass in seq order)."""
        cols = cls()
        for seqs, kinds, created, superseded in source.iter_columns(user_id):
            cols.add(seqs, kinds, created, superseded)
        return cols

    @property
    def size(self) -> int:
        """How many memories the columns hold."""
        return self._n

    def _code(self, kind: str) -> int:
        code = self._kind_codes.get(kind)
        if code is None:
            code = self._kind_codes[kind] = len(self._kind_names)
            self._kind_names.append(kind)
        return code

    def add(self, seqs: Sequence[int], kinds: Sequence[str], created: Sequence[float],
            superseded: Sequence[bool] | None = None) -> None:
        """Add rows (a seq already held is replaced)."""
        if not len(seqs):
            return
        new_seqs = np.asarray(seqs, np.int64)
        new_created = np.asarray(created, np.float64)
        new_kind = np.asarray([self._code(k) for k in kinds], np.int16)
        for s, sup in zip(seqs, superseded or (), strict=False):
            if sup:
                self._superseded.add(int(s))
        n, m = self._n, len(new_seqs)
        in_order = bool(np.all(np.diff(new_seqs) > 0)) and (n == 0 or int(new_seqs[0]) > int(self._seqs[n - 1]))
        if not in_order:  # another instance's rows (shared stores) or a repeat: merge, then sort
            keep = ~np.isin(self._seqs[:n], new_seqs)
            all_seqs = np.concatenate([self._seqs[:n][keep], new_seqs])
            order = np.argsort(all_seqs, kind="stable")
            self._seqs = all_seqs[order]
            self._created = np.concatenate([self._created[:n][keep], new_created])[order]
            self._kind = np.concatenate([self._kind[:n][keep], new_kind])[order]
            self._n = len(self._seqs)
            return
        if n + m > len(self._seqs):  # grow geometrically: one turn's write must not copy a million rows
            cap = max(n + m, 2 * len(self._seqs), 1024)
            for name in ("_seqs", "_created", "_kind"):
                old = getattr(self, name)
                grown = np.zeros(cap, old.dtype)
                grown[:n] = old[:n]
                setattr(self, name, grown)
        self._seqs[n:n + m] = new_seqs
        self._created[n:n + m] = new_created
        self._kind[n:n + m] = new_kind
        self._n = n + m

    def remove(self, seqs: Iterable[int]) -> None:
        """Forget these rows (unknown seqs are ignored)."""
        gone = np.asarray(sorted({int(s) for s in seqs}), np.int64)
        if not len(gone) or not self._n:
            return
        n = self._n
        keep = ~np.isin(self._seqs[:n], gone)
        kept = int(keep.sum())
        self._seqs[:kept] = self._seqs[:n][keep]
        self._created[:kept] = self._created[:n][keep]
        self._kind[:kept] = self._kind[:n][keep]
        self._n = kept
        self._superseded.difference_update(gone.tolist())

    def set_superseded(self, seqs: Iterable[int], superseded: bool) -> None:
        """Mark rows superseded (a newer fact replaced them) or current again."""
        if superseded:
            self._superseded.update(int(s) for s in seqs)
        else:
            self._superseded.difference_update(int(s) for s in seqs)

    def replace_superseded(self, seqs: Iterable[int]) -> None:
        """The full set of superseded rows, read anew (shared stores: another instance may have changed it)."""
        self._superseded = {int(s) for s in seqs}

    def _positions(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows of ``seqs`` found, mask of which were found)."""
        held = self._seqs[: self._n]
        pos = np.searchsorted(held, seqs)
        found = pos < self._n
        found[found] = held[pos[found]] == seqs[found]
        return pos[found], found

    def usable(self, seqs: Iterable[int], include_superseded: bool, kinds: Sequence[str] | None) -> Candidates:
        """Those of ``seqs`` that exist and pass the filters, ascending."""
        arr = np.asarray(sorted({int(s) for s in seqs}), np.int64)
        rows, found = self._positions(arr)
        arr = arr[found]
        ok = np.ones(len(arr), bool)
        if kinds:
            codes = [self._kind_codes[k] for k in kinds if k in self._kind_codes]
            ok &= np.isin(self._kind[rows], np.asarray(codes, np.int16))
        if not include_superseded and self._superseded:
            ok &= np.asarray([int(s) not in self._superseded for s in arr.tolist()], bool)
        rows, arr = rows[ok], arr[ok]
        names = self._kind_names
        return Candidates(seqs=arr.tolist(), created=self._created[rows].tolist(),
                          kinds=[names[c] for c in self._kind[rows].tolist()])

    def in_window(self, start: float, end: float, limit: int) -> list[int]:
        """Seqs created in ``[start, end)``, newest first (ties: higher seq first), at most ``limit``."""
        n = self._n
        if limit <= 0 or not n:
            return []
        created = self._created[:n]
        rows = np.flatnonzero((created >= start) & (created < end))
        if not len(rows):
            return []
        if len(rows) > limit:
            # The newest ``limit`` without sorting the whole window (a month of a million memories
            # is ~90k rows): everything newer than the limit-th date, then as many of the rows on
            # that date as fit, highest seq first, as the SQL query orders ties.
            when = created[rows]
            cut = np.partition(when, len(when) - limit)[len(when) - limit]
            newer, tied = rows[when > cut], rows[when == cut]
            rows = np.concatenate([newer, tied[::-1][: limit - len(newer)]])
        order = np.lexsort((-self._seqs[rows], -created[rows]))  # date descending, then seq descending
        return self._seqs[rows[order]].tolist()
