"""The :class:`~agent.memory.records.RecordStore` on PostgreSQL, for several Parley instances sharing memory.

Same rows, reads (:mod:`.sql_reads`) and behaviour as :class:`~agent.memory.records.SQLiteRecordStore`, plus a
per-user change counter (``memory_versions``) that every insert, delete, clear and
supersede bumps *in the same transaction*. :class:`~agent.memory.store.MemoryStore`
compares it before each recall with the version its cached FAISS/BM25 indexes were
built at, so a write committed by another instance is seen by the next recall here.

Every write is one transaction and returns only after ``COMMIT`` (PostgreSQL's
default ``synchronous_commit=on``: durable on the server's disk, and on replicas
if the operator configured synchronous replication). Connections come from a
``psycopg_pool`` pool; the schema is created and migrated at start-up under an
advisory lock, so two instances starting at once do not race.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from agent.memory.records_types import NewRow
from agent.memory.sql_reads import POSTGRES, SQLReads

# (version, statements). Append new migrations; never edit an applied one.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE memories (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused: the index key
            id text NOT NULL UNIQUE,
            user_id text NOT NULL,
            session_id text,
            kind text NOT NULL,
            text text NOT NULL,
            tokens text NOT NULL,
            content_hash text NOT NULL,
            created_at double precision NOT NULL,
            metadata text NOT NULL DEFAULT '{}',  -- text, not jsonb: round-trips exactly as SQLite's
            superseded_by text,
            embedding bytea NOT NULL,              -- float16, as in SQLite
            embedding_model text NOT NULL
        );
        CREATE INDEX ix_mem_user_seq ON memories(user_id, seq);
        CREATE INDEX ix_mem_user_created ON memories(user_id, created_at);
        CREATE INDEX ix_mem_user_hash ON memories(user_id, kind, content_hash);
        CREATE INDEX ix_mem_user_session ON memories(user_id, session_id, seq);
        CREATE INDEX ix_mem_user_superseded ON memories(user_id, superseded_by);
        CREATE TABLE memory_versions (user_id text PRIMARY KEY, version bigint NOT NULL);
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
_LOCK_KEY = 0x5041524C4559  # "PARLEY": the advisory lock that serialises migrations

def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL or ``key=value`` form), for logs and errors."""
    out = re.sub(r"(://[^:/?#@\s]*:)[^@/?#\s]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", out, flags=re.IGNORECASE)


def migrate(conn: psycopg.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` in one transaction; returns the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        found = int(row[0]) if row and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"the memory database has schema version {found}, newer than this Parley "
                               f"({SCHEMA_VERSION}): upgrade Parley")
        for version, sql in MIGRATIONS:
            if version > found:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (version,))
    return found


class PostgresRecordStore(SQLReads):
    """:class:`~agent.memory.records.RecordStore` on PostgreSQL (psycopg 3 + a connection pool).

    ``shared = True`` tells :class:`~agent.memory.store.MemoryStore` that other
    processes write here too: it then keeps no index files and checks
    :meth:`version` before using a cached index.
    """

    shared = True
    dialect = POSTGRES

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0) -> None:
        self.dsn_redacted = redact_dsn(dsn)
        try:  # one direct connection first: a clear error for a wrong DSN, and the schema migrated once
            with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s)), autocommit=True) as conn:
                migrate(conn)
        except psycopg.OperationalError as exc:
            # libpq's messages name the host and user, never the password; redact anyway, and drop the
            # exception chain, whose frames hold the DSN.
            raise ConnectionError(f"cannot use the memory database {self.dsn_redacted}: "
                                  f"{redact_dsn(str(exc)).strip()}") from None
        self._pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, timeout=timeout_s,
                                    kwargs={"autocommit": True}, open=False, name="parley-memory")
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout:
            self._pool.close()
            raise ConnectionError(f"cannot open a connection pool to {self.dsn_redacted}") from None
        self._written: dict[str, list[int]] = {}
        self._written_lock = threading.Lock()

    # -- versions ----------------------------------------------------------------------------------
    @staticmethod
    def _bump(conn: psycopg.Connection, user_id: str) -> int:
        # The row lock also serialises concurrent writers of one user until they commit.
        row = conn.execute(
            "INSERT INTO memory_versions(user_id, version) VALUES (%s, 1) ON CONFLICT (user_id)"
            " DO UPDATE SET version = memory_versions.version + 1 RETURNING version",
            (user_id,),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _note(self, user_id: str, version: int) -> None:
        with self._written_lock:
            self._written.setdefault(user_id, []).append(version)

    def version(self, user_id: str) -> int:
        """The user's change counter (0 before the first write)."""
        row = self._one("SELECT version FROM memory_versions WHERE user_id=%s", (user_id,))
        return int(row[0]) if row else 0

    def pop_written_versions(self, user_id: str) -> list[int]:
        """Versions that this process's own committed writes produced for ``user_id`` since the last call."""
        with self._written_lock:
            return self._written.pop(user_id, [])

    # -- writes ------------------------------------------------------------------------------------
    def _write(self, user_id: str, sql: str, args: Sequence[Any]) -> list[tuple]:
        """One statement and the version bump in one transaction; returns the statement's rows."""
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.execute(sql, args)
            rows = cur.fetchall() if cur.description else []
            version = self._bump(conn, user_id) if cur.rowcount > 0 else None
        if version is not None:  # noted only once committed
            self._note(user_id, version)
        return rows

    def insert(self, rows: Sequence[NewRow]) -> list[int]:
        """Insert rows (all of one user, as MemoryStore does) in one transaction; return their seqs in order."""
        if not rows:
            return []
        users = {r.user_id for r in rows}
        params = [
            (r.id, r.user_id, r.session_id, r.kind, r.text, r.tokens, r.content_hash, float(r.created_at),
             json.dumps(r.metadata, ensure_ascii=False), np.asarray(r.embedding, dtype=np.float16).tobytes(),
             r.embedding_model)
            for r in rows
        ]
        seqs: list[int] = []
        versions: dict[str, int] = {}
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO memories(id, user_id, session_id, kind, text, tokens, content_hash, created_at,"
                " metadata, embedding, embedding_model) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING seq",
                params,
                returning=True,
            )
            while True:
                row = cur.fetchone()
                assert row is not None
                seqs.append(int(row[0]))
                if not cur.nextset():
                    break
            for uid in sorted(users):  # sorted: two multi-user batches never deadlock on the version rows
                versions[uid] = self._bump(conn, uid)
        for uid, v in versions.items():
            self._note(uid, v)
        return seqs

    def delete(self, user_id: str, memory_id: str) -> int | None:
        rows = self._write(user_id, "DELETE FROM memories WHERE user_id=%s AND id=%s RETURNING seq",
                           (user_id, memory_id))
        return int(rows[0][0]) if rows else None

    def clear(self, user_id: str) -> int:
        with self._pool.connection() as conn, conn.transaction():
            n = conn.execute("DELETE FROM memories WHERE user_id=%s", (user_id,)).rowcount
            version = self._bump(conn, user_id)
        self._note(user_id, version)
        return n

    def mark_superseded(self, user_id: str, memory_id: str, by_id: str) -> None:
        self._write(user_id, "UPDATE memories SET superseded_by=%s WHERE user_id=%s AND id=%s",
                    (by_id, user_id, memory_id))

    def unmark_superseded_by(self, user_id: str, by_id: str) -> int:
        """Make current again the facts that ``by_id`` had superseded (used when it is deleted)."""
        with self._pool.connection() as conn, conn.transaction():
            n = conn.execute("UPDATE memories SET superseded_by=NULL WHERE user_id=%s AND superseded_by=%s",
                             (user_id, by_id)).rowcount
            version = self._bump(conn, user_id) if n else None
        if version is not None:
            self._note(user_id, version)
        return n

    def update_embeddings(self, user_id: str, seqs: Sequence[int], vectors: np.ndarray, model: str) -> None:
        # No version bump: the rows' set does not change, and every instance must use one embedding model.
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "UPDATE memories SET embedding=%s, embedding_model=%s WHERE user_id=%s AND seq=%s",
                [(np.asarray(v, dtype=np.float16).tobytes(), model, user_id, int(s))
                 for s, v in zip(seqs, vectors, strict=True)],
            )

    # -- reads -------------------------------------------------------------------------------------
    def _all(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        with self._pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any]) -> tuple | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def ping(self, timeout_s: float = 2.0) -> None:
        """Raise if PostgreSQL cannot answer a query within ``timeout_s`` (the readiness probe)."""
        with self._pool.connection(timeout=timeout_s) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._pool.close()
