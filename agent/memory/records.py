"""Record storage for long-term memory: the :class:`RecordStore` interface and its SQLite implementation.

SQLite is the source of truth. Everything else (the FAISS vectors, the BM25 index)
is a cache that can be rebuilt from the rows here, which is why each row also keeps
its embedding (float16, to halve the size) and its pre-computed lexical tokens. The
reads are shared with PostgreSQL (:mod:`.sql_reads`); this file holds SQLite's schema,
connection and writes.
"""

from __future__ import annotations

import builtins  # the stores have a method named list: inside them, builtins.list is the type
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agent.memory.records_types import MemoryRecord, NewRow
from agent.memory.sql_reads import SQLITE, SQLReads

__all__ = ["SCHEMA_VERSION", "MemoryRecord", "NewRow", "RecordStore", "SQLiteRecordStore", "SharedRecordStore"]

SCHEMA_VERSION = 1


class RecordStore(Protocol):
    """What :class:`~agent.memory.store.MemoryStore` needs from a record database.

    ``seq`` is a per-database, never-reused integer that the vector and lexical
    indexes use as their key. A PostgreSQL store can implement this with a
    ``bigserial`` column.
    """

    def insert(self, rows: Sequence[NewRow]) -> list[int]:
        """Add the rows; returns their new seqs, in order."""
    def get(self, user_id: str, memory_id: str) -> MemoryRecord | None:
        """One of the user's memories by id, or None."""
    def get_by_seqs(self, user_id: str, seqs: Sequence[int]) -> list[MemoryRecord]:
        """The user's memories with these seqs (unknown seqs are skipped)."""
    def list(self, user_id: str, limit: int, offset: int, include_superseded: bool) -> list[MemoryRecord]:
        """A page of the user's memories, newest first (superseded ones only if asked)."""
    def delete(self, user_id: str, memory_id: str) -> int | None:
        """Delete one memory; returns its seq, or None if the user has no such memory."""
    def clear(self, user_id: str) -> int:
        """Delete all of the user's memories; returns how many there were."""
    def mark_superseded(self, user_id: str, memory_id: str, by_id: str) -> None:
        """Record that ``memory_id`` was replaced by the newer memory ``by_id``."""
    def unmark_superseded_by(self, user_id: str, by_id: str) -> int:
        """Make current again the memories ``by_id`` had superseded (when it is deleted); returns how many."""
    def find_by_hash(self, user_id: str, kind: str, content_hash: str) -> MemoryRecord | None:
        """The newest current memory of this kind with this content hash (an exact duplicate), or None."""
    def count(self, user_id: str) -> int:
        """How many memories the user has."""
    def max_seq(self, user_id: str) -> int:
        """The user's highest seq (0 with no memories): the indexes' watermark."""
    def seqs(self, user_id: str) -> builtins.list[int]:
        """Every seq the user has."""
    def stats(self, user_id: str) -> dict[str, Any]:
        """Totals per kind, superseded count, oldest and newest dates, number of sessions."""
    def users(self) -> builtins.list[str]:
        """Every user id with at least one memory."""
    def iter_vectors(
        self, user_id: str, after_seq: int = 0, batch: int = 20000
    ) -> Iterator[tuple[np.ndarray, np.ndarray, builtins.list[str]]]:
        """``(seqs, float32 vectors, embedding model names)`` after ``after_seq``, in seq order, in batches."""
    def iter_tokens(
        self, user_id: str, batch: int = 50000
    ) -> Iterator[tuple[builtins.list[int], builtins.list[str]]]:
        """``(seqs, space-joined tokens)`` in seq order, in batches, to build the lexical index."""
    def vectors_for(self, user_id: str, seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(seqs, vectors) of these seqs."""
    def iter_columns(
        self, user_id: str, batch: int = 50000
    ) -> Iterator[tuple[builtins.list[int], builtins.list[str], builtins.list[float], builtins.list[bool]]]:
        """``(seqs, kinds, created_at, superseded?)`` in seq order, in batches (the search's columns cache)."""
    def columns_for(
        self, user_id: str, seqs: Sequence[int]
    ) -> tuple[builtins.list[int], builtins.list[str], builtins.list[float], builtins.list[bool]]:
        """The columns of :meth:`iter_columns` for these seqs."""
    def superseded_seqs(self, user_id: str) -> builtins.list[int]:
        """Seqs of the user's superseded memories."""
    def seqs_superseded_by(self, user_id: str, by_id: str) -> builtins.list[int]:
        """Seqs of the memories ``by_id`` superseded."""
    def seqs_in_window(self, user_id: str, start: float, end: float, limit: int) -> builtins.list[int]:
        """Seqs of the user's memories created between ``start`` and ``end`` (epoch seconds)."""
    def session_neighbours(self, user_id: str, session_id: str, seq: int) -> builtins.list[int]:
        """Seqs of the turns just before and after ``seq`` in the same session."""
    def texts_for(self, user_id: str, seqs: Sequence[int]) -> dict[int, str]:
        """The text of each of these seqs."""
    def update_embeddings(
        self, user_id: str, seqs: Sequence[int], vectors: np.ndarray, model: str
    ) -> None:
        """Store new vectors for these seqs, made by embedder ``model``."""
    def ping(self) -> None:
        """Raise if the database cannot be reached (``/readyz``)."""
    def close(self) -> None:
        """Close the connection(s)."""


@runtime_checkable
class SharedRecordStore(RecordStore, Protocol):
    """A record store several instances write to (``shared = True``, ``records_pg.PostgresRecordStore``).

    A per-user change counter tells each instance's index cache when another instance wrote.
    """

    shared: bool

    def version(self, user_id: str) -> int:
        """The user's change counter (0 before the first write)."""
    def pop_written_versions(self, user_id: str) -> builtins.list[int]:
        """Versions this process's own writes produced for the user since the last call."""
    def tokens_for(self, user_id: str, seqs: Sequence[int]) -> dict[int, str]:
        """The tokenized text of each of these seqs."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reuse a deleted seq (index keys)
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    session_id TEXT,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    superseded_by TEXT,
    embedding BLOB NOT NULL,
    embedding_model TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_mem_user_seq ON memories(user_id, seq);
CREATE INDEX IF NOT EXISTS ix_mem_user_created ON memories(user_id, created_at);
CREATE INDEX IF NOT EXISTS ix_mem_user_hash ON memories(user_id, kind, content_hash);
CREATE INDEX IF NOT EXISTS ix_mem_user_session ON memories(user_id, session_id, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteRecordStore(SQLReads):
    """:class:`RecordStore` on one SQLite file in WAL mode.

    Every write commits before returning with ``synchronous=FULL``, so an
    acknowledged write survives a process kill and a power cut. One connection is
    shared by all threads behind a lock (SQLite serialises writers anyway, and
    the store's reads are short).
    """

    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    # -- writes ---------------------------------------------------------------------------------
    def insert(self, rows: Sequence[NewRow]) -> list[int]:
        """Insert rows in one transaction; return their seqs in order."""
        seqs: list[int] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for r in rows:
                    cur = self._db.execute(
                        "INSERT INTO memories(id, user_id, session_id, kind, text, tokens, content_hash,"
                        " created_at, metadata, embedding, embedding_model)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            r.id,
                            r.user_id,
                            r.session_id,
                            r.kind,
                            r.text,
                            r.tokens,
                            r.content_hash,
                            float(r.created_at),
                            json.dumps(r.metadata, ensure_ascii=False),
                            np.asarray(r.embedding, dtype=np.float16).tobytes(),
                            r.embedding_model,
                        ),
                    )
                    seqs.append(int(cur.lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seqs

    def delete(self, user_id: str, memory_id: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "DELETE FROM memories WHERE user_id=? AND id=? RETURNING seq", (user_id, memory_id)
            ).fetchone()
        return None if row is None else int(row[0])

    def clear(self, user_id: str) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM memories WHERE user_id=?", (user_id,))
        return cur.rowcount

    def mark_superseded(self, user_id: str, memory_id: str, by_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE memories SET superseded_by=? WHERE user_id=? AND id=?", (by_id, user_id, memory_id)
            )

    def unmark_superseded_by(self, user_id: str, by_id: str) -> int:
        """Make current again the facts that ``by_id`` had superseded (used when it is deleted)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE memories SET superseded_by=NULL WHERE user_id=? AND superseded_by=?", (user_id, by_id)
            )
        return cur.rowcount

    def update_embeddings(self, user_id: str, seqs: Sequence[int], vectors: np.ndarray, model: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE memories SET embedding=?, embedding_model=? WHERE user_id=? AND seq=?",
                [
                    (np.asarray(v, dtype=np.float16).tobytes(), model, user_id, int(s))
                    for s, v in zip(seqs, vectors, strict=True)
                ],
            )
            self._db.execute("COMMIT")

    # -- reads (the queries are SQLReads'; this runs them) ----------------------------------------
    def _all(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def ping(self) -> None:
        """Raise if the database cannot answer a query (the readiness probe, speech/transport/probes.py)."""
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()
