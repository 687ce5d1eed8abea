"""The per-user indexes a :class:`~agent.memory.store.MemoryStore` keeps in memory, and their locks.

Each cached user has a FAISS index, a BM25 index and a lock of their own, so one user's
writes or index build never stall another user's search. The cache itself (an LRU bounded
in vectors and in users) has a short lock that is only held to look up, insert or drop an
entry; it is never taken while waiting for a user's lock, and a user's lock is never held
while evicting, so the two cannot deadlock.

Two ways of keeping indexes fresh:

- *local* stores (SQLite): ``index/<user_id>.faiss`` + ``.json`` files are caches of the
  records, loaded on first use and caught up from the rows written after their watermark
  (rebuilt if rows were deleted or the embedding model changed);
- *shared* stores (PostgreSQL, written by several instances): nothing on disk; before
  every use the user's change counter is read and other instances' writes are applied.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from agent.embedding import Embedder
from agent.memory.columns_state import ColumnReader, UserColumns
from agent.memory.lexical import LexicalIndex
from agent.memory.lexical_state import UserLexical
from agent.memory.records import RecordStore, SharedRecordStore
from agent.memory.vector_index import UserIndex, build_index, load_index, remove_files, save_index

AUTOSAVE_MIN = 256
"""Writes after which a user's index file is re-saved (or 10% of its size, whichever is larger)."""


@dataclass
class UserState:
    """One cached user: indexes, the lock that guards them, and (shared stores) the version they reflect."""

    index: UserIndex
    lexical: UserLexical = field(default_factory=UserLexical)
    columns: UserColumns = field(default_factory=UserColumns)
    """What fusion reads of each memory; loaded on the first search (see :mod:`.columns_state`)."""
    version: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


class UserCache:
    """LRU cache of users' indexes, loading, catching up and saving them. Thread-safe."""

    def __init__(self, records: RecordStore, embedder: Embedder, path: Path, *, shared: bool,
                 encode: Callable[[list[str]], np.ndarray], cache_vectors: int, cache_users: int,
                 lexical_sync_max: int) -> None:
        self.records = records
        self.shared_records = cast(SharedRecordStore, records) if shared else None
        self.embedder = embedder
        self.path = path
        self.shared = shared
        self._encode = encode
        self.cache_vectors = cache_vectors
        self.cache_users = max(1, cache_users)
        self.lexical_sync_max = lexical_sync_max
        self._lock = threading.Lock()
        # Least recently used first, bounded by cache_vectors and cache_users (see evict).
        self.users: OrderedDict[str, UserState] = OrderedDict()
        # One loader per user at a time: two first searches of a user load its index once.
        self._loading: dict[str, threading.Lock] = {}

    # -- lookup --------------------------------------------------------------------------------
    def get(self, user_id: str, *, create: bool = True) -> UserState | None:
        """The user's state, loaded on first use; None if ``create`` is off and the user has no memories.

        With ``create=False`` (read-only calls) nothing is cached and no file is written for a
        user who has no memories, so reads under made-up user ids leave no trace.
        The caller takes ``state.lock`` before using the indexes, then calls :meth:`catch_up`.
        """
        with self._lock:
            st = self.users.get(user_id)
            if st is not None:
                self.users.move_to_end(user_id)
                return st
        if not create and self.records.count(user_id) == 0:
            return None
        with self._lock:
            loader = self._loading.setdefault(user_id, threading.Lock())
        with loader:  # loading reads thousands of rows: outside the cache lock
            with self._lock:
                st = self.users.get(user_id)
            if st is None:
                st = self._load(user_id)
                with self._lock:
                    self.users[user_id] = st
                    self._loading.pop(user_id, None)
        self.evict()
        return st

    def empty(self) -> UserState:
        """An uncached, empty state (what read-only calls see for unknown users)."""
        return UserState(index=UserIndex(self.embedder.dim))

    def drop(self, user_id: str) -> None:
        """Forget the user's cached indexes (and, for a local store, their files).

        Waits for a load of this user that is under way, so an index read before the user's
        rows were cleared is not cached after this returns.
        """
        with self._lock:
            loader = self._loading.setdefault(user_id, threading.Lock())
        with loader, self._lock:
            self.users.pop(user_id, None)
            self._loading.pop(user_id, None)
        if not self.shared:
            remove_files(self.index_path(user_id))

    def _load(self, user_id: str) -> UserState:
        if self.shared_records is not None:
            # The counter is read before the rows: a write committed in between leaves the cache
            # marked older than it is (caught up on next use), never newer.
            version = self.shared_records.version(user_id)
            self.shared_records.pop_written_versions(user_id)
            return UserState(index=self.rebuild_vectors(user_id), version=version)
        return UserState(index=self._load_vectors(user_id))

    # -- freshness (caller holds st.lock) ---------------------------------------------------------
    def catch_up(self, user_id: str, st: UserState) -> None:
        """Apply other instances' writes to a cached user's indexes (shared stores only)."""
        rs = self.shared_records
        if rs is None:
            return
        version = rs.version(user_id)
        if version == st.version:
            return
        in_db = set(rs.seqs(user_id))
        cached = set(st.index.ids().tolist())
        gone, new = sorted(cached - in_db), sorted(in_db - cached)
        st.index.remove(gone)
        if new:
            seqs, vecs = rs.vectors_for(user_id, new)
            st.index.add(seqs, vecs)
        if st.columns.active:
            st.columns.remove(gone)
            st.columns.add(*rs.columns_for(user_id, new))
            # Another instance may have superseded a fact (or made one current again) without adding a row.
            st.columns.replace_superseded(rs.superseded_seqs(user_id))
        if st.lexical.index is not None or st.lexical.building:
            for s in gone:
                st.lexical.remove(s)
            for s, toks in (rs.tokens_for(user_id, new) if new else {}).items():
                st.lexical.add(s, toks.split())
        st.version = version

    def own_writes(self, user_id: str, st: UserState) -> None:
        """Advance the cache's version past this process's own writes, if nobody else wrote in between."""
        if self.shared_records is None:
            return
        for v in sorted(self.shared_records.pop_written_versions(user_id)):
            if v == st.version + 1:
                st.version = v
            # else: another instance wrote too; the next use catches up (idempotently) from the database

    def lexical(self, user_id: str, st: UserState) -> LexicalIndex | None:
        """The user's BM25 index; None while a large user's first build runs (see :mod:`.lexical_state`)."""
        return st.lexical.get(lambda: self.records.iter_tokens(user_id), st.index.ntotal, st.lock,
                              self.lexical_sync_max)

    def columns(self, user_id: str, st: UserState) -> ColumnReader:
        """The user's columns for fusion; a large user's are loaded in the background (caller holds st.lock)."""
        return st.columns.get(self.records, user_id, st.index.ntotal, st.lock, self.lexical_sync_max)

    # -- eviction and files ---------------------------------------------------------------------
    def evict(self) -> None:
        """Drop least recently used users until the cache fits ``cache_vectors`` and ``cache_users``.

        The most recently used user always stays. A local store saves an evicted user's index
        first if it changed, so eviction costs a file load on that user's next use. Callers must
        not hold a user's lock (the victim's lock is taken to save it).
        """
        victims = []
        with self._lock:
            total = sum(st.index.ntotal for st in self.users.values())
            while (total > self.cache_vectors or len(self.users) > self.cache_users) and len(self.users) > 1:
                uid, old = self.users.popitem(last=False)
                total -= old.index.ntotal
                victims.append((uid, old))
        for uid, old in victims:
            with old.lock:
                self.save_if_dirty(uid, old)

    def index_path(self, user_id: str) -> Path:
        """Where a local user's FAISS index file lives."""
        return self.path / "index" / f"{user_id}.faiss"

    def watermark(self, user_id: str) -> dict[str, Any]:
        """What an index file was built from (rows, last seq, embedder): a mismatch means rebuild."""
        return {
            "count": self.records.count(user_id),
            "max_seq": self.records.max_seq(user_id),
            "model": self.embedder.name,
            "dim": self.embedder.dim,
        }

    def save_if_dirty(self, user_id: str, st: UserState) -> None:
        """Save a local user's index if it changed since its last save (caller holds st.lock)."""
        if not self.shared and st.index.dirty:
            save_index(st.index, self.index_path(user_id), self.watermark(user_id))

    def maybe_save(self, user_id: str, st: UserState) -> None:
        """Re-save a local user's index file after enough writes (caller holds st.lock)."""
        if not self.shared and st.index.dirty >= max(AUTOSAVE_MIN, st.index.ntotal // 10):
            save_index(st.index, self.index_path(user_id), self.watermark(user_id))

    def flush(self) -> None:
        """Save every index that changed since its last save."""
        with self._lock:
            states = list(self.users.items())
        for uid, st in states:
            with st.lock:
                self.save_if_dirty(uid, st)

    def rebuild(self, user_id: str) -> None:
        """Rebuild the user's indexes from the records (local: and save them; shared: on next use)."""
        with self._lock:
            self.users.pop(user_id, None)
        if self.shared:
            return
        ui = self.rebuild_vectors(user_id)
        save_index(ui, self.index_path(user_id), self.watermark(user_id))
        with self._lock:
            self.users[user_id] = UserState(index=ui)

    # -- vectors from the records ---------------------------------------------------------------
    def _load_vectors(self, user_id: str) -> UserIndex:
        path = self.index_path(user_id)
        count = self.records.count(user_id)
        loaded = load_index(path, self.embedder.dim)
        ui: UserIndex | None = None
        if loaded is not None:
            ui, meta = loaded
            if meta.get("model") != self.embedder.name:
                ui = None
            else:
                for seqs, vecs, models in self.records.iter_vectors(user_id, after_seq=int(meta["max_seq"])):
                    ui.add(seqs, self._check_vectors(user_id, seqs, vecs, models))
                if ui.ntotal != count:  # rows deleted since the save: cannot patch, rebuild
                    ui = None
        if ui is None:
            ui = self.rebuild_vectors(user_id)
            ui.dirty = max(ui.dirty, 1) if count else 0  # an empty index is not worth a file
        if ui.dirty:
            save_index(ui, path, self.watermark(user_id))
        return ui

    def _check_vectors(self, user_id: str, seqs: np.ndarray, vecs: np.ndarray, models: list[str]) -> np.ndarray:
        """Re-embed rows that were stored with another embedding model (and store the new vectors)."""
        stale = [i for i, m in enumerate(models) if m != self.embedder.name]
        if not stale and vecs.shape[1] == self.embedder.dim:
            return vecs
        stale = list(range(len(seqs))) if vecs.shape[1] != self.embedder.dim else stale
        texts = self.records.texts_for(user_id, [int(seqs[i]) for i in stale])
        new = self._encode([texts[int(seqs[i])] for i in stale])
        out = np.zeros((len(seqs), self.embedder.dim), dtype=np.float32)
        if vecs.shape[1] == self.embedder.dim:
            out[:] = vecs
        out[stale] = new
        self.records.update_embeddings(user_id, [int(seqs[i]) for i in stale], new, self.embedder.name)
        return out

    def rebuild_vectors(self, user_id: str) -> UserIndex:
        """A user's vector index rebuilt from the stored embeddings (re-embedding rows of another model)."""
        all_seqs, all_vecs = [], []
        for seqs, vecs, models in self.records.iter_vectors(user_id):
            all_seqs.append(seqs)
            all_vecs.append(self._check_vectors(user_id, seqs, vecs, models))
        if not all_seqs:
            return UserIndex(self.embedder.dim)
        return build_index(self.embedder.dim, np.concatenate(all_seqs), np.vstack(all_vecs))
