"""MemoryStore: Parley's long-term memory (SQLite or PostgreSQL records + per-user FAISS and BM25 indexes).

The store is the public face; the parts live beside it: :mod:`.user_cache` (each user's
indexes, their locks, index files and the shared-mode catch-up), :mod:`.writes` (inserts,
the fact policy and deletes), :mod:`.recall` (the fusion) and :mod:`.search_steps` (the other
search steps).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from agent.embedding import MEMORY_EMBEDDING_MODEL, Embedder, load_embedder
from agent.ids import validate_user_id
from agent.memory import search_steps, writes
from agent.memory.items import Item, MemoryNotFoundError, parse_item, validate_memory_id
from agent.memory.lexical import tokenize
from agent.memory.lexical_state import SYNC_BUILD_MAX
from agent.memory.recall import RecallSettings, fuse, params_for
from agent.memory.records import MemoryRecord, RecordStore, SQLiteRecordStore
from agent.memory.timewindow import find_relative_event, find_time_window
from agent.memory.user_cache import AUTOSAVE_MIN, UserCache, UserState

log = logging.getLogger(__name__)

__all__ = ["AUTOSAVE_MIN", "CACHE_USERS", "CACHE_VECTORS", "MemoryNotFoundError", "MemoryStore", "open_memory",
           "validate_memory_id"]

CACHE_VECTORS = 200_000
"""Default bound of the index cache, in vectors (about 300 MB of MiniLM vectors)."""

CACHE_USERS = 1000
"""Default bound of the index cache, in users: idle users' indexes are dropped (saved first) past it."""


class MemoryStore:
    """Long-term memory of every user, in one directory.

    Layout of ``path``: ``memory.sqlite3`` (the records, the source of truth) and
    ``index/<user_id>.faiss`` + ``.json`` (each user's vector index and the
    watermark it was saved at). Indexes are caches: missing, corrupt or stale ones
    are repaired from SQLite on first use of that user.

    Writes are durable when they return (SQLite WAL, ``synchronous=FULL``). The
    index files are re-saved every ``AUTOSAVE_MIN`` writes (or 10% of the index)
    and on :meth:`flush`/:meth:`close`; a crash in between costs only a catch-up on
    the next start. All methods are thread-safe. Each user has a lock of their own,
    so one user's writes or index build never hold up another user's search, and
    embedding runs outside any lock. Open one ``MemoryStore`` per directory per process.
    A user with more than ``lexical_sync_max`` memories gets their BM25 index and search
    columns built in background threads (see :mod:`.lexical_state`, :mod:`.columns_state`).

    Facts (``kind="fact"``) are de-duplicated and superseded as described in
    :mod:`agent.memory.facts`. Search is hybrid: see :meth:`search`.

    With a *shared* record store (:class:`~agent.memory.records_pg.PostgresRecordStore`,
    written by several Parley instances) nothing is kept on disk: ``path`` may be None,
    each user's indexes are built from the database on first use and kept in an LRU
    cache bounded by ``cache_vectors``, and before every use the user's change counter
    is read (one primary-key lookup); if another instance changed the user's memories,
    the indexes catch up (new rows added, deleted rows removed) before the search runs.
    """

    def __init__(
        self,
        path: str | Path | None = "./data/memory",
        embedder: Embedder | None = None,
        records: RecordStore | None = None,
        params: RecallSettings | None = None,
        cache_vectors: int = CACHE_VECTORS,
        cache_users: int = CACHE_USERS,
        lexical_sync_max: int = SYNC_BUILD_MAX,
    ) -> None:
        self.shared = bool(getattr(records, "shared", False))
        if path is None and records is None:
            raise ValueError("MemoryStore needs a path or a record store")
        self.path = Path(path) if path is not None else Path()
        if not self.shared:
            self.path.mkdir(parents=True, exist_ok=True)
        # Searches are one query at a time; FAISS's OpenMP threads gain nothing there, and
        # their spin-waiting after each call starved torch (query embedding went from ~15 ms
        # to ~300 ms on two cores). Process-wide setting: batch FAISS users may raise it again.
        faiss.omp_set_num_threads(1)
        self.embedder = embedder if embedder is not None else load_embedder(MEMORY_EMBEDDING_MODEL)
        self.records: RecordStore = records if records is not None else SQLiteRecordStore(
            self.path / "memory.sqlite3"
        )
        self.params = params or params_for(self.embedder.name)
        self.cache = UserCache(self.records, self.embedder, self.path, shared=self.shared, encode=self._encode,
                               cache_vectors=cache_vectors, cache_users=cache_users,
                               lexical_sync_max=lexical_sync_max)
        self._closed = False

    @property
    def _users(self) -> OrderedDict[str, UserState]:
        """The cached users, least recently used first (tests look at it)."""
        return self.cache.users

    def _encode(self, texts: list[str]) -> np.ndarray:
        return writes.as_stored(self.embedder.encode(texts))

    @contextlib.contextmanager
    def _user(self, user_id: str, create: bool = True) -> Iterator[UserState | None]:
        """The user's indexes under the user's lock, caught up with other instances' writes.

        ``create=False`` (read-only calls) yields None for a user nobody has cached who has no
        memories. Eviction runs after the lock is let go (it takes the evicted user's lock).
        """
        st = self.cache.get(user_id, create=create)
        if st is None:
            yield None
            return
        try:
            with st.lock:
                self.cache.catch_up(user_id, st)
                yield st
        finally:
            self.cache.evict()

    # -- writes ------------------------------------------------------------------------------
    def add(
        self,
        user_id: str,
        text: str,
        kind: str = "turn",
        metadata: dict[str, Any] | None = None,
        created_at: float | datetime | None = None,
        *,
        session_id: str | None = None,
        supersedes: str | None = None,
        auto_supersede: bool = True,
    ) -> str:
        """Store one memory and return its id (for a duplicate fact: the existing id).

        ``session_id`` may also be given as ``metadata["session_id"]``. For facts,
        ``supersedes`` names an older fact this one replaces; see :mod:`agent.memory.facts`.
        The write is committed to SQLite before this returns.
        """
        item = {"text": text, "kind": kind, "metadata": metadata, "created_at": created_at,
                "session_id": session_id, "supersedes": supersedes, "auto_supersede": auto_supersede}
        return self.add_many(user_id, [item])[0]

    def add_fact(self, user_id: str, text: str, **kwargs: Any) -> str:
        """``add(user_id, text, kind="fact", ...)``: de-duplicated and superseding."""
        return self.add(user_id, text, kind="fact", **kwargs)

    def add_many(self, user_id: str, items: Iterable[str | dict[str, Any]]) -> list[str]:
        """Store many memories with one batched embedding; returns their ids in order.

        Items are strings (turns) or dicts with ``text`` and optionally ``kind``,
        ``metadata``, ``created_at``, ``session_id``, ``supersedes``. Turns are
        committed in one transaction; facts one by one (each may de-duplicate
        against the ones before it).
        """
        validate_user_id(user_id)
        parsed = [parse_item(raw) for raw in items]
        if not parsed:
            return []
        vecs = self._encode([it.text for it in parsed])  # outside any lock: the slow part
        return self._write(user_id, parsed, vecs)

    def _add_precomputed(
        self, user_id: str, items: Sequence[str | dict[str, Any]], vectors: np.ndarray
    ) -> list[str]:
        """Bulk insert with vectors computed elsewhere (benchmarks, migrations). Skips fact policy."""
        validate_user_id(user_id)
        parsed = [parse_item(raw) for raw in items]
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.shape != (len(parsed), self.embedder.dim):
            raise ValueError(f"vectors must have shape ({len(parsed)}, {self.embedder.dim})")
        vecs = writes.as_stored(vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12))
        return self._write(user_id, parsed, vecs, fact_policy=False)

    def _write(self, user_id: str, items: list[Item], vecs: np.ndarray, fact_policy: bool = True) -> list[str]:
        with self._user(user_id) as st:
            assert st is not None
            ids = writes.write(self.records, self.embedder.name, user_id, st, items, vecs, fact_policy)
            self.cache.own_writes(user_id, st)
            self.cache.maybe_save(user_id, st)
        return ids

    def delete(self, user_id: str, memory_id: str) -> None:
        """Delete one memory for good (facts it had superseded become current again)."""
        validate_user_id(user_id)
        validate_memory_id(memory_id)
        with self._user(user_id, create=False) as st:
            if st is None or not writes.delete(self.records, user_id, st, memory_id):
                raise MemoryNotFoundError(f"no memory {memory_id!r} for user {user_id!r}")
            self.cache.own_writes(user_id, st)
            self.cache.maybe_save(user_id, st)

    def clear(self, user_id: str) -> int:
        """Delete all of a user's memories; returns how many there were."""
        validate_user_id(user_id)
        st = self.cache.users.get(user_id)
        with st.lock if st is not None else contextlib.nullcontext():
            n = self.records.clear(user_id)
            self.cache.drop(user_id)
        return n

    # -- reads -------------------------------------------------------------------------------
    def get(self, user_id: str, memory_id: str) -> MemoryRecord:
        """One memory of this user, or :class:`MemoryNotFoundError`."""
        validate_user_id(user_id)
        rec = self.records.get(user_id, validate_memory_id(memory_id))
        if rec is None:
            raise MemoryNotFoundError(f"no memory {memory_id!r} for user {user_id!r}")
        return rec

    def list(
        self, user_id: str, limit: int = 50, offset: int = 0, include_superseded: bool = True
    ) -> builtins.list[MemoryRecord]:
        """Newest first. Superseded facts are included (with ``superseded_by`` set) unless told not to."""
        validate_user_id(user_id)
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        return self.records.list(user_id, limit, offset, include_superseded)

    def stats(self, user_id: str) -> dict[str, Any]:
        """Counts by kind, superseded facts, time span, sessions, and the index kind and size."""
        validate_user_id(user_id)
        out = self.records.stats(user_id)
        with self._user(user_id, create=False) as st:
            st = st or self.cache.empty()
            out["index"] = {"type": "ivf" if st.index.is_ivf else "flat", "vectors": st.index.ntotal,
                            "model": self.embedder.name}
        return out

    def users(self) -> builtins.list[str]:
        """Every user id that has at least one memory."""
        return self.records.users()

    def search(
        self,
        user_id: str,
        query: str,
        k: int = 5,
        *,
        now: float | None = None,
        tz: tzinfo | None = None,
        mode: str = "hybrid",
        include_superseded: bool = False,
        kinds: Sequence[str] | None = None,
    ) -> builtins.list[MemoryRecord]:
        """The ``k`` memories most relevant to ``query``, best first (``.score`` = fused score).

        ``mode="hybrid"`` (default) fuses dense (FAISS) and BM25 rankings with
        reciprocal rank fusion, adds a second BM25 hop through the rare words of the
        best hits (multi-hop questions), then applies time awareness (a time phrase in
        the query such as "yesterday" / "上周" boosts memories inside that window and
        adds the window's memories to the candidates; see :mod:`agent.memory.timewindow`),
        optionally pulls up the neighbouring turns of strong hits in the same session,
        and breaks ties by recency. ``mode="dense"`` is plain dense top-k (the benchmark
        baseline). ``now`` (epoch seconds) and ``tz`` anchor the time phrases; they
        default to the current time and zone.
        """
        validate_user_id(user_id)
        if mode not in ("hybrid", "dense"):
            raise ValueError("mode must be 'hybrid' or 'dense'")
        if not isinstance(query, str) or not query.strip() or k <= 0:
            return []
        # load_embedder() returns a CachedEmbedder: an embedding of this text made moments ago is reused.
        qvec = np.asarray(self.embedder.encode([query]), dtype=np.float32)[0]
        p = self.params
        now = time.time() if now is None else now
        window = find_time_window(query, now, tz)
        relative = find_relative_event(query) if window is None and p.event_windows and mode == "hybrid" else None
        if relative is not None:
            # First find the event the period is named after; its time gives the window.
            # (Taking the earliest of several strong matches, since later mentions mostly look
            # back at the event, scored lower on the tuning half: it often picked another event.)
            anchor = self.search(user_id, relative.anchor, 1, now=now, tz=tz, kinds=kinds)
            if anchor:
                window = relative.window(anchor[0].created_at)
        with self._user(user_id, create=False) as st:
            if st is None or st.index.ntotal == 0:
                return []
            pool = max(p.pool, 4 * k)
            d_scores, d_seqs = st.index.search(qvec, pool)
            if mode == "dense":
                return search_steps.dense_only(self.records, user_id, d_scores, d_seqs, k, include_superseded,
                                               kinds)
            q_tokens = tokenize(relative.rest if relative is not None and window is not None else query)
            if window is not None:
                q_tokens = [t for t in q_tokens if t not in p.time_words]
            lexical_index = self.cache.lexical(user_id, st)
            scored = lexical_index.score(q_tokens) if lexical_index is not None else None
            lexical = scored.top(pool) if scored is not None else []
            columns = self.cache.columns(user_id, st)
            return fuse(
                self.records,
                user_id,
                columns,
                st.index.vectors_of,
                dense=list(zip(d_seqs.tolist(), d_scores.tolist(), strict=True)),
                lexical=lexical,
                window_ranked=search_steps.window_ranking(columns, st.index.matrix_of, window, qvec, p, pool),
                window=window,
                k=k,
                bridge=search_steps.second_hop(self.records, user_id, p, lexical_index, scored, lexical, pool),
                params=search_steps.current_params(p, query),
                include_superseded=include_superseded,
                kinds=kinds,
                cjk_query=search_steps.is_cjk(query),
                lexical_coverage=scored.coverage() if scored is not None else 0.0,
            )

    # -- maintenance -------------------------------------------------------------------------
    def check_consistency(self, user_id: str) -> dict[str, Any]:
        """Compare the user's vector index with SQLite: ``{"ok", "missing", "extra"}`` (seq lists)."""
        validate_user_id(user_id)
        with self._user(user_id, create=False) as st:
            st = st or self.cache.empty()
            in_index = set(st.index.ids().tolist())
            in_db = set(self.records.seqs(user_id))
            ntotal = st.index.ntotal
        return {"ok": in_index == in_db and ntotal == len(in_db), "missing": sorted(in_db - in_index),
                "extra": sorted(in_index - in_db)}

    def rebuild(self, user_id: str) -> None:
        """Rebuild the user's indexes from SQLite and save them (shared stores: on next use)."""
        validate_user_id(user_id)
        st = self.cache.users.get(user_id)
        with st.lock if st is not None else contextlib.nullcontext():
            self.cache.rebuild(user_id)

    def preload(self, user_id: str) -> None:
        """Load (or catch up) the user's indexes now, e.g. when their session starts, not at the first recall."""
        validate_user_id(user_id)
        with self._user(user_id, create=False) as st:
            if st is not None:
                self.cache.lexical(user_id, st)  # a large user's BM25 build starts now, in the background

    def wait_for_indexes(self, user_id: str, timeout: float | None = None) -> bool:
        """Wait until no background BM25 build or columns load of this user is running; False on timeout."""
        validate_user_id(user_id)
        st = self.cache.users.get(user_id)
        return st is None or (st.lexical.done.wait(timeout) and st.columns.done.wait(timeout))

    def flush(self) -> None:
        """Save every index that changed since its last save."""
        self.cache.flush()

    def close(self) -> None:
        """Flush the indexes and close the database. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        self.records.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- asyncio conveniences (run in a worker thread) -----------------------------------------
    async def aadd(self, user_id: str, text: str, **kwargs: Any) -> str:
        """:meth:`add` in a worker thread."""
        return await asyncio.to_thread(self.add, user_id, text, **kwargs)

    async def aadd_many(self, user_id: str, items: Iterable[str | dict[str, Any]]) -> builtins.list[str]:
        """:meth:`add_many` in a worker thread."""
        return await asyncio.to_thread(self.add_many, user_id, list(items))

    async def asearch(self, user_id: str, query: str, k: int = 5, **kwargs: Any) -> builtins.list[MemoryRecord]:
        """:meth:`search` in a worker thread."""
        return await asyncio.to_thread(self.search, user_id, query, k, **kwargs)


def open_memory(config: Any, embedder: Embedder | None = None) -> MemoryStore:
    """The store an :class:`~agent.config.AgentSettings` asks for: PostgreSQL with ``memory_db``, else SQLite.

    Memory embeds with ``config.memory_embedding_model_name``, not with the router's and
    retrieval's ``embedder``, which is used only when both name the same model.
    """
    name = getattr(config, "memory_embedding_model_name", None) or MEMORY_EMBEDDING_MODEL
    if embedder is None or name != getattr(config, "embedding_model_name", None):
        embedder = load_embedder(name)
    dsn = getattr(config, "memory_db", None)
    if not dsn:
        return MemoryStore(config.memory_dir, embedder=embedder)
    from agent.memory.records_pg import PostgresRecordStore  # psycopg is only needed in this mode

    records = PostgresRecordStore(dsn)
    log.info("long-term memory in PostgreSQL at %s (shared with other instances)", records.dsn_redacted)
    return MemoryStore(None, embedder=embedder, records=records,
                       cache_vectors=getattr(config, "memory_cache_vectors", CACHE_VECTORS))
