"""The read queries of both record stores, written once against a small SQL dialect.

SQLite and PostgreSQL run the same SELECTs; they differ in the parameter mark (``?``
against ``%s``) and in how a list of seqs is passed (``IN (?,?,...)`` in chunks against
``= ANY(%s)`` with an array). A store mixes in :class:`SQLReads`, names its
:class:`Dialect` and provides ``_all(sql, args)``; a new backend is its connection
handling and its writes (transactions and change counters differ too much to share).
Queries are written with ``?``; :meth:`SQLReads._q` turns them into the dialect's mark.
"""

from __future__ import annotations

import builtins  # the stores have a method named list: inside them, builtins.list is the type
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.memory.records_types import MemoryRecord

COLS = "seq, id, user_id, session_id, kind, text, created_at, metadata, superseded_by"
"""The columns a :class:`MemoryRecord` is read from, in :func:`record`'s order."""


def record(row: Sequence[Any]) -> MemoryRecord:
    """A row of :data:`COLS` as a record."""
    seq, mid, uid, sid, kind, text, created, meta, sup = row
    return MemoryRecord(id=mid, user_id=uid, session_id=sid, kind=kind, text=text, created_at=created,
                        metadata=json.loads(meta), superseded_by=sup, seq=int(seq))


_COLUMN_COLS = "seq, kind, created_at, superseded_by IS NOT NULL"


def _columns(rows: Sequence[Sequence[Any]]) -> tuple[list[int], list[str], list[float], list[bool]]:
    return ([int(r[0]) for r in rows], [r[1] for r in rows], [float(r[2]) for r in rows],
            [bool(r[3]) for r in rows])


def blob_to_vecs(blobs: Sequence[bytes], dim: int | None = None) -> np.ndarray:
    """Stored float16 embeddings as a float32 matrix (one row per blob)."""
    if not blobs:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), -1).astype(np.float32)


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of two backends for the read queries."""

    mark: str
    """The parameter mark: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    array_in: bool
    """True: a list of seqs is one array parameter (``seq = ANY(%s)``); False: ``IN (?,?,...)``."""
    chunk: int = 500
    """Seqs per ``IN (...)`` query (SQLite's default limit on parameters is 999)."""

    def seq_lists(self, seqs: Sequence[int]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """(condition, args) pairs that together select ``seqs``, written with ``?``."""
        ints = [int(s) for s in seqs]
        if not ints:
            return
        if self.array_in:
            yield "seq = ANY(?)", (ints,)
            return
        for i in range(0, len(ints), self.chunk):
            part = ints[i : i + self.chunk]
            yield f"seq IN ({','.join('?' * len(part))})", tuple(part)


SQLITE = Dialect(mark="?", array_in=False)
POSTGRES = Dialect(mark="%s", array_in=True)


class SQLReads:
    """Every read of :class:`~agent.memory.records.RecordStore`, for a store that provides ``_all``."""

    dialect: Dialect

    def _all(self, sql: str, args: Sequence[Any]) -> builtins.list[tuple]:
        """Run one query (already in the dialect's marks) and return all rows."""
        raise NotImplementedError

    def _q(self, sql: str, args: Sequence[Any] = ()) -> builtins.list[tuple]:
        """Run a query written with ``?`` marks."""
        if self.dialect.mark != "?":
            sql = sql.replace("?", self.dialect.mark)
        return self._all(sql, args)

    def _by_seqs(self, cols: str, user_id: str, seqs: Sequence[int]) -> builtins.list[tuple]:
        rows: builtins.list[tuple] = []
        for cond, args in self.dialect.seq_lists(seqs):
            rows += self._q(f"SELECT {cols} FROM memories WHERE user_id=? AND {cond}", (user_id, *args))
        return rows

    def get(self, user_id: str, memory_id: str) -> MemoryRecord | None:
        rows = self._q(f"SELECT {COLS} FROM memories WHERE user_id=? AND id=?", (user_id, memory_id))
        return record(rows[0]) if rows else None

    def get_by_seqs(self, user_id: str, seqs: Sequence[int]) -> builtins.list[MemoryRecord]:
        """Records for ``seqs`` (any order; missing ones and other users' rows are skipped)."""
        return [record(r) for r in self._by_seqs(COLS, user_id, seqs)]

    def texts_for(self, user_id: str, seqs: Sequence[int]) -> dict[int, str]:
        return {int(s): t for s, t in self._by_seqs("seq, text", user_id, seqs)}

    def tokens_for(self, user_id: str, seqs: Sequence[int]) -> dict[int, str]:
        """Stored lexical tokens of ``seqs`` (for catching up a cached BM25 index)."""
        return {int(s): t for s, t in self._by_seqs("seq, tokens", user_id, seqs)}

    def vectors_for(self, user_id: str, seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        rows = self._by_seqs("seq, embedding", user_id, seqs)
        return np.asarray([r[0] for r in rows], dtype=np.int64), blob_to_vecs([bytes(r[1]) for r in rows])

    def list(self, user_id: str, limit: int, offset: int, include_superseded: bool) -> builtins.list[MemoryRecord]:
        cond = "" if include_superseded else " AND superseded_by IS NULL"
        rows = self._q(f"SELECT {COLS} FROM memories WHERE user_id=?{cond} ORDER BY created_at DESC, seq DESC"
                       " LIMIT ? OFFSET ?", (user_id, int(limit), int(offset)))
        return [record(r) for r in rows]

    def find_by_hash(self, user_id: str, kind: str, content_hash: str) -> MemoryRecord | None:
        rows = self._q(f"SELECT {COLS} FROM memories WHERE user_id=? AND kind=? AND content_hash=?"
                       " AND superseded_by IS NULL ORDER BY seq DESC LIMIT 1", (user_id, kind, content_hash))
        return record(rows[0]) if rows else None

    def count(self, user_id: str) -> int:
        return int(self._q("SELECT count(*) FROM memories WHERE user_id=?", (user_id,))[0][0])

    def max_seq(self, user_id: str) -> int:
        return int(self._q("SELECT coalesce(max(seq), 0) FROM memories WHERE user_id=?", (user_id,))[0][0])

    def seqs(self, user_id: str) -> builtins.list[int]:
        return [int(r[0]) for r in self._q("SELECT seq FROM memories WHERE user_id=? ORDER BY seq", (user_id,))]

    def stats(self, user_id: str) -> dict[str, Any]:
        rows = self._q("SELECT kind, count(*), count(superseded_by), min(created_at), max(created_at)"
                       " FROM memories WHERE user_id=? GROUP BY kind", (user_id,))
        by_kind = {r[0]: int(r[1]) for r in rows}
        sessions = self._q("SELECT count(DISTINCT session_id) FROM memories WHERE user_id=?", (user_id,))
        return {
            "user_id": user_id,
            "total": sum(by_kind.values()),
            "by_kind": by_kind,
            "superseded": sum(int(r[2] or 0) for r in rows),
            "oldest": min((r[3] for r in rows), default=None),
            "newest": max((r[4] for r in rows), default=None),
            "sessions": int(sessions[0][0]) if sessions else 0,
        }

    def users(self) -> builtins.list[str]:
        return [r[0] for r in self._q("SELECT DISTINCT user_id FROM memories ORDER BY user_id")]

    def iter_vectors(
        self, user_id: str, after_seq: int = 0, batch: int = 20000
    ) -> Iterator[tuple[np.ndarray, np.ndarray, builtins.list[str]]]:
        """Yield ``(seqs, float32 vectors, embedding model names)`` in seq order, in batches."""
        last = after_seq
        while True:
            rows = self._q("SELECT seq, embedding, embedding_model FROM memories WHERE user_id=? AND seq>?"
                           " ORDER BY seq LIMIT ?", (user_id, last, batch))
            if not rows:
                return
            last = rows[-1][0]
            yield (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                   blob_to_vecs([bytes(r[1]) for r in rows]), [r[2] for r in rows])

    def iter_tokens(self, user_id: str, batch: int = 50000) -> Iterator[tuple[builtins.list[int], builtins.list[str]]]:
        last = 0
        while True:
            rows = self._q("SELECT seq, tokens FROM memories WHERE user_id=? AND seq>? ORDER BY seq LIMIT ?",
                           (user_id, last, batch))
            if not rows:
                return
            last = rows[-1][0]
            yield [int(r[0]) for r in rows], [r[1] for r in rows]

    def iter_columns(
        self, user_id: str, batch: int = 50000
    ) -> Iterator[tuple[builtins.list[int], builtins.list[str], builtins.list[float], builtins.list[bool]]]:
        """``(seqs, kinds, created_at, superseded?)`` in seq order, in batches (see :mod:`.columns`)."""
        last = 0
        while True:
            rows = self._q(f"SELECT {_COLUMN_COLS} FROM memories WHERE user_id=? AND seq>? ORDER BY seq LIMIT ?",
                           (user_id, last, batch))
            if not rows:
                return
            last = rows[-1][0]
            yield _columns(rows)

    def columns_for(
        self, user_id: str, seqs: Sequence[int]
    ) -> tuple[builtins.list[int], builtins.list[str], builtins.list[float], builtins.list[bool]]:
        """The columns of :meth:`iter_columns` for these seqs (missing ones skipped)."""
        return _columns(self._by_seqs(_COLUMN_COLS, user_id, seqs))

    def superseded_seqs(self, user_id: str) -> builtins.list[int]:
        """Seqs of the user's superseded memories."""
        return [int(r[0]) for r in self._q("SELECT seq FROM memories WHERE user_id=? AND superseded_by IS NOT NULL",
                                           (user_id,))]

    def seqs_superseded_by(self, user_id: str, by_id: str) -> builtins.list[int]:
        """Seqs of the memories ``by_id`` superseded."""
        return [int(r[0]) for r in self._q("SELECT seq FROM memories WHERE user_id=? AND superseded_by=?",
                                           (user_id, by_id))]

    def seqs_in_window(self, user_id: str, start: float, end: float, limit: int) -> builtins.list[int]:
        rows = self._q("SELECT seq FROM memories WHERE user_id=? AND created_at>=? AND created_at<?"
                       " ORDER BY created_at DESC LIMIT ?", (user_id, start, end, int(limit)))
        return [int(r[0]) for r in rows]

    def session_neighbours(self, user_id: str, session_id: str, seq: int) -> builtins.list[int]:
        """The turns just before and just after ``seq`` in the same session."""
        where = "FROM memories WHERE user_id=? AND session_id=? AND kind='turn'"
        prev = self._q(f"SELECT seq {where} AND seq<? ORDER BY seq DESC LIMIT 1", (user_id, session_id, seq))
        nxt = self._q(f"SELECT seq {where} AND seq>? ORDER BY seq LIMIT 1", (user_id, session_id, seq))
        return [int(r[0]) for r in prev + nxt]
