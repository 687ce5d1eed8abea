"""MemoryStore: Parley's long-term memory (SQLite records + per-user FAISS and BM25 indexes)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from agent.embedding import MEMORY_EMBEDDING_MODEL, Embedder, load_embedder
from agent.ids import validate_user_id
from agent.language import HAN
from agent.memory import facts
from agent.memory.items import Item, MemoryNotFoundError, parse_item, validate_memory_id
from agent.memory.lexical import LexicalIndex, tokenize
from agent.memory.lexical_state import SYNC_BUILD_MAX, UserLexical
from agent.memory.recall import RecallParams, fuse
from agent.memory.records import MemoryRecord, NewRow, RecordStore, SQLiteRecordStore
from agent.memory.timewindow import find_relative_event, find_time_window
from agent.memory.vector_index import UserIndex, build_index, load_index, remove_files, save_index

log = logging.getLogger(__name__)
AUTOSAVE_MIN = 256
"""Writes after which a user's index file is re-saved (or 10% of its size, whichever is larger)."""

CACHE_VECTORS = 200_000
"""Default bound of the index cache, in vectors (about 300 MB of MiniLM vectors)."""

CACHE_USERS = 1000
"""Default bound of the index cache, in users: idle users' indexes are dropped (saved first) past it."""


@dataclass
class _UserState:
    index: UserIndex
    lexical: UserLexical = field(default_factory=UserLexical)
    sessions: set[str] = field(default_factory=set)
    version: int = 0  # shared stores: the user's change counter the indexes reflect


class MemoryStore:
    """Long-term memory of every user, in one directory.

    Layout of ``path``: ``memory.sqlite3`` (the records, the source of truth) and
    ``index/<user_id>.faiss`` + ``.json`` (each user's vector index and the
    watermark it was saved at). Indexes are caches: missing, corrupt or stale ones
    are repaired from SQLite on first use of that user.

    Writes are durable when they return (SQLite WAL, ``synchronous=FULL``). The
    index files are re-saved every ``AUTOSAVE_MIN`` writes (or 10% of the index)
    and on :meth:`flush`/:meth:`close`; a crash in between costs only a catch-up on
    the next start. All methods are thread-safe; embedding runs outside the store
    lock so a slow ``add`` does not hold up searches. Open one ``MemoryStore`` per
    directory per process.

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
        params: RecallParams | None = None,
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
        self.embedder = embedder if embedder is not None else load_embedder()
        self.records: RecordStore = records if records is not None else SQLiteRecordStore(
            self.path / "memory.sqlite3"
        )
        self.params = params or RecallParams()
        self._lock = threading.RLock()
        # Least recently used first, bounded by cache_vectors and cache_users (see _evict).
        self._users: OrderedDict[str, _UserState] = OrderedDict()
        self.cache_vectors = cache_vectors
        self.cache_users = max(1, cache_users)
        self.lexical_sync_max = lexical_sync_max
        self._closed = False

    # -- helpers -----------------------------------------------------------------------------
    def _index_path(self, user_id: str) -> Path:
        return self.path / "index" / f"{user_id}.faiss"

    def _watermark(self, user_id: str) -> dict[str, Any]:
        return {
            "count": self.records.count(user_id),
            "max_seq": self.records.max_seq(user_id),
            "model": self.embedder.name,
            "dim": self.embedder.dim,
        }

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = np.asarray(self.embedder.encode(texts), dtype=np.float32)
        # Rows are stored as float16; index the same rounded values so a rebuilt index is identical.
        return vecs.astype(np.float16).astype(np.float32)

    def _encode_query(self, query: str) -> np.ndarray:
        # load_embedder() returns a CachedEmbedder: the router's embedding of this turn is reused.
        return np.asarray(self.embedder.encode([query]), dtype=np.float32)[0]

    def _existing_state(self, user_id: str) -> _UserState | None:
        """``_state`` for the read-only calls, but None for a user who is not cached and has no memories.

        Nothing is cached for such a user and no index file is written, so reads under
        made-up user ids leave no trace on disk or in the process.
        """
        if user_id not in self._users and self.records.count(user_id) == 0:
            return None
        return self._state(user_id)

    def _state(self, user_id: str) -> _UserState:
        """The user's indexes, loaded (caught up or rebuilt) on first use. Caller holds the lock."""
        st = self._users.get(user_id)
        if st is None and self.shared:
            # The counter is read before the rows: a write committed in between leaves the cache
            # marked older than it is (caught up on next use), never newer.
            version = self.records.version(user_id)  # type: ignore[attr-defined]
            self.records.pop_written_versions(user_id)  # type: ignore[attr-defined]
            st = _UserState(index=self._rebuild_vectors(user_id), version=version)
            self._users[user_id] = st
            self._evict()
        elif st is None:
            st = _UserState(index=self._load_vectors(user_id))
            self._users[user_id] = st
            self._evict()
        else:
            self._users.move_to_end(user_id)
            if self.shared:
                self._catch_up(user_id, st)
        return st

    def _state_or_empty(self, user_id: str) -> _UserState:
        """``_state`` for read-only calls: an uncached, unremembered empty state for unknown users."""
        st = self._existing_state(user_id)
        return st if st is not None else _UserState(index=UserIndex(self.embedder.dim))

    def _load_unlocked(self, user_id: str) -> None:
        """Build a shared store's missing user index *outside* the store lock, then cache it.

        Loading thousands of vectors from the database takes a while; under the lock it
        would stall every other user's recall on this instance meanwhile.
        """
        if not self.shared or user_id in self._users:
            return
        if self.records.count(user_id) == 0:  # nothing to load; reads must not cache unknown users
            return
        version = self.records.version(user_id)  # type: ignore[attr-defined]  # before the rows, as in _state
        index = self._rebuild_vectors(user_id)
        with self._lock:
            if user_id not in self._users:  # another thread may have loaded it meanwhile
                self._users[user_id] = _UserState(index=index, version=version)
                self._evict()

    def _catch_up(self, user_id: str, st: _UserState) -> None:
        """Apply other instances' writes to a cached user's indexes (shared stores only)."""
        version = self.records.version(user_id)  # type: ignore[attr-defined]
        if version == st.version:
            return
        in_db = set(self.records.seqs(user_id))
        cached = set(st.index.ids().tolist())
        gone, new = sorted(cached - in_db), sorted(in_db - cached)
        st.index.remove(gone)
        if new:
            seqs, vecs = self.records.vectors_for(user_id, new)
            st.index.add(seqs, vecs)
        if st.lexical.index is not None or st.lexical.building:
            for s in gone:
                st.lexical.remove(s)
            for s, toks in (self.records.tokens_for(user_id, new) if new else {}).items():  # type: ignore[attr-defined]
                st.lexical.add(s, toks.split())
        st.version = version

    def _own_writes(self, user_id: str, st: _UserState) -> None:
        """Advance the cache's version past this process's own writes, if nobody else wrote in between."""
        if not self.shared:
            return
        for v in sorted(self.records.pop_written_versions(user_id)):  # type: ignore[attr-defined]
            if v == st.version + 1:
                st.version = v
            # else: another instance wrote too; the next use catches up (idempotently) from the database
        self._evict()

    def _evict(self) -> None:
        """Drop least recently used users until the cache fits ``cache_vectors`` and ``cache_users``.

        The most recently used user always stays. A local store saves an evicted user's
        index first if it changed, so eviction costs a file load on that user's next use.
        """
        total = sum(st.index.ntotal for st in self._users.values())
        while (total > self.cache_vectors or len(self._users) > self.cache_users) and len(self._users) > 1:
            uid, old = self._users.popitem(last=False)
            total -= old.index.ntotal
            if not self.shared and old.index.dirty:
                save_index(old.index, self._index_path(uid), self._watermark(uid))

    def _load_vectors(self, user_id: str) -> UserIndex:
        path = self._index_path(user_id)
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
            ui = self._rebuild_vectors(user_id)
            ui.dirty = max(ui.dirty, 1) if count else 0  # an empty index is not worth a file
        if ui.dirty:
            save_index(ui, path, self._watermark(user_id))
        return ui

    def _check_vectors(
        self, user_id: str, seqs: np.ndarray, vecs: np.ndarray, models: list[str]
    ) -> np.ndarray:
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

    def _rebuild_vectors(self, user_id: str) -> UserIndex:
        all_seqs, all_vecs = [], []
        for seqs, vecs, models in self.records.iter_vectors(user_id):
            all_seqs.append(seqs)
            all_vecs.append(self._check_vectors(user_id, seqs, vecs, models))
        if not all_seqs:
            return UserIndex(self.embedder.dim)
        return build_index(self.embedder.dim, np.concatenate(all_seqs), np.vstack(all_vecs))

    def _lexical(self, user_id: str, st: _UserState) -> LexicalIndex | None:
        """The user's BM25 index; None while a large user's first build runs (see :mod:`.lexical_state`)."""
        return st.lexical.get(lambda: self.records.iter_tokens(user_id), st.index.ntotal, self._lock,
                              self.lexical_sync_max)

    def _maybe_save(self, user_id: str, st: _UserState) -> None:
        if self.shared:
            return
        if st.index.dirty >= max(AUTOSAVE_MIN, st.index.ntotal // 10):
            save_index(st.index, self._index_path(user_id), self._watermark(user_id))

    def _get_or_raise(self, user_id: str, memory_id: str) -> MemoryRecord:
        rec = self.records.get(user_id, validate_memory_id(memory_id))
        if rec is None:
            raise MemoryNotFoundError(f"no memory {memory_id!r} for user {user_id!r}")
        return rec

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
        item = {
            "text": text,
            "kind": kind,
            "metadata": metadata,
            "created_at": created_at,
            "session_id": session_id,
            "supersedes": supersedes,
            "auto_supersede": auto_supersede,
        }
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
        vecs = self._encode([it.text for it in parsed])  # outside the lock: the slow part
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
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        vecs = vecs.astype(np.float16).astype(np.float32)
        return self._write(user_id, parsed, vecs, fact_policy=False)

    def _write(
        self, user_id: str, items: list[Item], vecs: np.ndarray, fact_policy: bool = True
    ) -> list[str]:
        ids: list[str | None] = [None] * len(items)
        pending: list[int] = []
        with self._lock:
            st = self._state(user_id)
            for i, it in enumerate(items):
                if it.kind == "fact" and fact_policy:
                    self._insert(user_id, st, items, vecs, pending, ids)
                    pending = []
                    ids[i] = self._add_fact_locked(user_id, st, it, vecs[i])
                else:
                    pending.append(i)
            self._insert(user_id, st, items, vecs, pending, ids)
            self._own_writes(user_id, st)
            self._maybe_save(user_id, st)
        return [i for i in ids if i is not None]

    def _insert(
        self,
        user_id: str,
        st: _UserState,
        items: list[Item],
        vecs: np.ndarray,
        which: list[int],
        ids: list[str | None],
    ) -> None:
        if not which:
            return
        rows = []
        for i in which:
            it = items[i]
            toks = tokenize(it.text)
            rows.append(
                NewRow(
                    id=uuid.uuid4().hex,
                    user_id=user_id,
                    text=it.text,
                    kind=it.kind,
                    created_at=it.created_at,
                    session_id=it.session_id,
                    metadata=it.metadata,
                    tokens=" ".join(toks),
                    content_hash=facts.content_hash(it.text),
                    embedding=vecs[i],
                    embedding_model=self.embedder.name,
                )
            )
        seqs = self.records.insert(rows)  # durable from here on
        st.index.add(np.asarray(seqs, dtype=np.int64), vecs[which])
        for row, seq, i in zip(rows, seqs, which, strict=True):
            st.lexical.add(seq, row.tokens.split())
            ids[i] = row.id

    def _add_fact_locked(self, user_id: str, st: _UserState, it: Item, vec: np.ndarray) -> str:
        if it.supersedes is not None:
            self._get_or_raise(user_id, it.supersedes)
        same = self.records.find_by_hash(user_id, "fact", facts.content_hash(it.text))
        if same is not None and same.id != it.supersedes:
            return same.id
        decision = facts.FactDecision("new")
        if it.supersedes is None:
            scores, seqs = st.index.search(vec, 20)
            by_seq = {r.seq: r for r in self.records.get_by_seqs(user_id, seqs.tolist())}
            candidates = [
                (by_seq[int(s)].id, by_seq[int(s)].text, float(c))
                for c, s in zip(scores, seqs, strict=True)
                if int(s) in by_seq and by_seq[int(s)].kind == "fact" and by_seq[int(s)].superseded_by is None
            ]
            decision = facts.decide(it.text, candidates, auto_supersede=it.auto_supersede)
            if decision.action == "duplicate":
                assert decision.other_id is not None
                return decision.other_id
        ids: list[str | None] = [None]
        self._insert(user_id, st, [it], vec[None, :], [0], ids)
        new_id = ids[0]
        assert new_id is not None
        old = it.supersedes or (decision.other_id if decision.action == "supersede" else None)
        if old is not None:
            self.records.mark_superseded(user_id, old, new_id)
        return new_id

    def delete(self, user_id: str, memory_id: str) -> None:
        """Delete one memory for good (facts it had superseded become current again)."""
        validate_user_id(user_id)
        validate_memory_id(memory_id)
        with self._lock:
            st = self._existing_state(user_id)
            seq = self.records.delete(user_id, memory_id) if st is not None else None
            if st is None or seq is None:
                raise MemoryNotFoundError(f"no memory {memory_id!r} for user {user_id!r}")
            self.records.unmark_superseded_by(user_id, memory_id)
            st.index.remove([seq])
            st.lexical.remove(seq)
            self._own_writes(user_id, st)
            self._maybe_save(user_id, st)

    def clear(self, user_id: str) -> int:
        """Delete all of a user's memories; returns how many there were."""
        validate_user_id(user_id)
        with self._lock:
            n = self.records.clear(user_id)
            self._users.pop(user_id, None)
            if not self.shared:
                remove_files(self._index_path(user_id))
        return n

    # -- reads -------------------------------------------------------------------------------
    def get(self, user_id: str, memory_id: str) -> MemoryRecord:
        """One memory of this user, or :class:`MemoryNotFoundError`."""
        validate_user_id(user_id)
        return self._get_or_raise(user_id, memory_id)

    def list(
        self, user_id: str, limit: int = 50, offset: int = 0, include_superseded: bool = True
    ) -> list[MemoryRecord]:
        """Newest first. Superseded facts are included (with ``superseded_by`` set) unless told not to."""
        validate_user_id(user_id)
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        return self.records.list(user_id, limit, offset, include_superseded)

    def stats(self, user_id: str) -> dict[str, Any]:
        """Counts by kind, superseded facts, time span, sessions, and the index kind and size."""
        validate_user_id(user_id)
        with self._lock:
            out = self.records.stats(user_id)
            st = self._state_or_empty(user_id)
            out["index"] = {
                "type": "ivf" if st.index.is_ivf else "flat",
                "vectors": st.index.ntotal,
                "model": self.embedder.name,
            }
        return out

    def users(self) -> list[str]:
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
    ) -> list[MemoryRecord]:
        """The ``k`` memories most relevant to ``query``, best first (``.score`` = fused score).

        ``mode="hybrid"`` (default) fuses dense (FAISS) and BM25 rankings with
        reciprocal rank fusion, then applies time awareness (a time phrase in the
        query such as "yesterday" / "上周" boosts memories inside that window and
        adds the window's memories to the candidates; see
        :mod:`agent.memory.timewindow`), pulls up the neighbouring turns of strong
        hits in the same session, and breaks ties by recency. ``mode="dense"`` is
        plain dense top-k (the benchmark baseline). ``now`` (epoch seconds) and
        ``tz`` anchor the time phrases; they default to the current time and zone.
        """
        validate_user_id(user_id)
        if mode not in ("hybrid", "dense"):
            raise ValueError("mode must be 'hybrid' or 'dense'")
        if not isinstance(query, str) or not query.strip() or k <= 0:
            return []
        qvec = self._encode_query(query)
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
        self._load_unlocked(user_id)
        with self._lock:
            st = self._state_or_empty(user_id)
            if st.index.ntotal == 0:
                return []
            pool = max(p.pool, 4 * k)
            d_scores, d_seqs = st.index.search(qvec, pool)
            if mode == "dense":
                return self._dense_only(user_id, d_scores, d_seqs, k, include_superseded, kinds)
            q_tokens = tokenize(relative.rest if relative is not None and window is not None else query)
            if window is not None:
                q_tokens = [t for t in q_tokens if t not in p.time_words]
            lexical_index = self._lexical(user_id, st)
            lexical = lexical_index.search(q_tokens, pool) if lexical_index is not None else []
            bridge = self._bridge(user_id, lexical_index, lexical, q_tokens, pool)
            dense = list(zip(d_seqs.tolist(), d_scores.tolist(), strict=True))
            cjk = _is_cjk(query)
            window_ranked: list[tuple[int, float]] = []
            if window is not None and not (window.fuzzy and p.fuzzy_window_boost == 0):
                wseqs = self.records.seqs_in_window(user_id, window.start, window.end, p.window_scan)
                if wseqs:
                    seqs_arr, vecs = self.records.vectors_for(user_id, wseqs)
                    # Element-wise, not BLAS: OpenBLAS's threads spin after a call and starve torch.
                    sims = (vecs * qvec).sum(axis=1)
                    order = np.argsort(-sims)[:pool]
                    window_ranked = [(int(seqs_arr[i]), float(sims[i])) for i in order]
            return fuse(
                self.records,
                user_id,
                dense=dense,
                lexical=lexical,
                window_ranked=window_ranked,
                window=window,
                k=k,
                bridge=bridge,
                params=_current(p, query),
                include_superseded=include_superseded,
                kinds=kinds,
                cjk_query=cjk,
            )

    def _bridge(self, user_id: str, lexical_index: LexicalIndex | None, lexical: list[tuple[int, float]],
                q_tokens: list[str], pool: int) -> list[tuple[int, float]]:
        """A second BM25 hop: the query's words plus the rare words (names) of its best BM25 hits.

        "What has my sister started learning?" finds "My sister Anna came round..." but not
        "Anna told me she has just started learning pottery", which never says "sister";
        the hop carries "anna" over from the first turn to the second.
        """
        p = self.params
        if p.bridge_weight <= 0 or lexical_index is None or not lexical:
            return []
        asked = set(q_tokens)
        rare: list[str] = []
        for r in self.records.get_by_seqs(user_id, [s for s, _ in lexical[: p.bridge_hits]]):
            rare += [t for t in tokenize(r.text) if t not in asked and t not in rare
                     and lexical_index.share(t) <= p.bridge_max_share]
        if not rare:
            return []
        return lexical_index.search(q_tokens + rare, pool)

    def _dense_only(
        self,
        user_id: str,
        scores: np.ndarray,
        seqs: np.ndarray,
        k: int,
        include_superseded: bool,
        kinds: Sequence[str] | None,
    ) -> list[MemoryRecord]:
        by_seq = {r.seq: r for r in self.records.get_by_seqs(user_id, seqs.tolist())}
        out = []
        for s, c in zip(seqs.tolist(), scores.tolist(), strict=True):
            r = by_seq.get(s)
            if r is None or (r.superseded_by and not include_superseded) or (kinds and r.kind not in kinds):
                continue
            out.append(_with_score(r, c))
            if len(out) == k:
                break
        return out

    # -- maintenance -------------------------------------------------------------------------
    def check_consistency(self, user_id: str) -> dict[str, Any]:
        """Compare the user's vector index with SQLite: ``{"ok", "missing", "extra"}`` (seq lists)."""
        validate_user_id(user_id)
        with self._lock:
            st = self._state_or_empty(user_id)
            in_index = set(st.index.ids().tolist())
            in_db = set(self.records.seqs(user_id))
        return {
            "ok": in_index == in_db and st.index.ntotal == len(in_db),
            "missing": sorted(in_db - in_index),
            "extra": sorted(in_index - in_db),
        }

    def rebuild(self, user_id: str) -> None:
        """Rebuild the user's indexes from SQLite and save them."""
        validate_user_id(user_id)
        with self._lock:
            if self.shared:  # nothing on disk: forget the cache, the next use rebuilds from the database
                self._users.pop(user_id, None)
                return
            ui = self._rebuild_vectors(user_id)
            save_index(ui, self._index_path(user_id), self._watermark(user_id))
            self._users[user_id] = _UserState(index=ui)

    def preload(self, user_id: str) -> None:
        """Load (or catch up) the user's indexes now, e.g. when their session starts, not at the first recall."""
        validate_user_id(user_id)
        self._load_unlocked(user_id)
        with self._lock:
            st = self._existing_state(user_id)
            if st is not None:
                self._lexical(user_id, st)  # a large user's BM25 build starts now, in the background

    def wait_for_indexes(self, user_id: str, timeout: float | None = None) -> bool:
        """Wait until no background BM25 build of this user is running; False on timeout."""
        validate_user_id(user_id)
        with self._lock:
            st = self._users.get(user_id)
        return st is None or st.lexical.done.wait(timeout)

    def flush(self) -> None:
        """Save every index that changed since its last save."""
        with self._lock:
            for uid, st in self._users.items():
                if st.index.dirty and not self.shared:
                    save_index(st.index, self._index_path(uid), self._watermark(uid))

    def close(self) -> None:
        """Flush the indexes and close the database. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self.flush()
            self.records.close()
            self._closed = True

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- asyncio conveniences (run in a worker thread) -----------------------------------------
    async def aadd(self, user_id: str, text: str, **kwargs: Any) -> str:
        return await asyncio.to_thread(self.add, user_id, text, **kwargs)

    async def aadd_many(self, user_id: str, items: Iterable[str | dict[str, Any]]) -> list[str]:
        return await asyncio.to_thread(self.add_many, user_id, list(items))

    async def asearch(self, user_id: str, query: str, k: int = 5, **kwargs: Any) -> list[MemoryRecord]:
        return await asyncio.to_thread(self.search, user_id, query, k, **kwargs)


def open_memory(config: Any, embedder: Embedder | None = None) -> MemoryStore:
    """The store an :class:`~agent.config.AgentConfig` asks for: PostgreSQL with ``memory_db``, else SQLite.

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


def _current(p: RecallParams, query: str) -> RecallParams:
    """Params for this query: questions about the present ("现在", "currently") weigh recency more."""
    q = f" {query.lower()}"
    if any(w in q for w in p.current_words):
        from dataclasses import replace

        return replace(p, recency_weight=p.current_recency_weight)
    return p


def _is_cjk(text: str) -> bool:
    """True if at least a third of the letters are Chinese characters."""
    cjk = len(HAN.findall(text))
    letters = sum(1 for c in text if c.isalpha())
    return letters > 0 and cjk * 3 >= letters


def _with_score(r: MemoryRecord, score: float) -> MemoryRecord:
    from dataclasses import replace

    return replace(r, score=float(score))
