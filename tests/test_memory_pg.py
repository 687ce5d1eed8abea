"""MemoryStore on a real PostgreSQL server (tests/support/postgres.py): the SQLite tests' expectations, plus sharing.

Two ``MemoryStore`` objects on one database stand for two Parley instances here
(each has its own index cache, exactly as two processes would); the two-process
version over the real server API is tests/test_multi_instance.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import psycopg
import pytest

from agent.memory import MemoryNotFoundError, MemoryStore
from agent.memory.columns import RecordColumns
from agent.memory.records import NewRow, SQLiteRecordStore
from agent.memory.records_pg import SCHEMA_VERSION, PostgresRecordStore, migrate, redact_dsn

# The SQLite store's behaviour tests, collected again here with `store` below (a PostgreSQL-backed
# store): the same expectations hold for both record stores.
from tests.support.paths import ROOT
from tests.test_memory_store import (  # noqa: F401
    test_add_get_list_search_delete,
    test_add_many_mixed_items_and_stats,
    test_async_helpers,
    test_bad_and_unknown_memory_ids,
    test_fact_exact_and_near_duplicates,
    test_fact_supersede_automatic_and_explicit,
    test_invalid_user_ids_rejected_everywhere,
    test_threads_add_and_search_concurrently,
    test_user_isolation_on_every_method,
)

pytestmark = pytest.mark.slow


def open_store(dsn: str, embedder, **kwargs) -> MemoryStore:
    return MemoryStore(None, embedder=embedder, records=PostgresRecordStore(dsn), **kwargs)


@pytest.fixture
def store(pg_dsn, embedder):
    s = open_store(pg_dsn, embedder)
    yield s
    s.close()


@pytest.fixture
def pair(pg_dsn, embedder):
    """Two stores ("instances") on one database."""
    a, b = open_store(pg_dsn, embedder), open_store(pg_dsn, embedder)
    yield a, b
    a.close()
    b.close()


def test_record_stores_agree_call_by_call(pg_dsn, tmp_path):
    """Every RecordStore method answers the same on SQLite and PostgreSQL (seqs mapped back to ids)."""
    rng = np.random.default_rng(3)

    def rows(user: str, n: int, start: int) -> list[NewRow]:
        return [NewRow(id=f"{start + i:032x}", user_id=user, text=f"text {i} of {user}", kind="turn",
                       created_at=1000.0 + start + i, session_id="s1" if i % 2 else None, metadata={"n": i, "é": "ü"},
                       tokens=f"text {i} {user}", content_hash=f"h{i % 3}", embedding=rng.standard_normal(8),
                       embedding_model="m") for i in range(n)]

    batches = [rows("ua", 6, 0), rows("ub", 3, 100), rows("ua", 4, 200)]
    answers = []
    for s in (SQLiteRecordStore(tmp_path / "m.sqlite3"), PostgresRecordStore(pg_dsn)):
        seq_of: dict[str, int] = {}
        for batch in batches:
            seq_of.update(zip([r.id for r in batch], s.insert(batch), strict=True))
        to_id = {q: i for i, q in seq_of.items()}
        ids = sorted(i for i in seq_of if int(i, 16) < 100)  # the first batch (user ua)
        vseqs, vecs = s.vectors_for("ua", [seq_of[i] for i in ids[:3]])
        answer = {
            "superseded": s.mark_superseded("ua", ids[0], ids[1]),
            "delete": to_id[s.delete("ua", ids[2]) or 0], "delete_missing": s.delete("ua", ids[2]),
            "delete_other_user": s.delete("ub", ids[3]),
            "get": s.get("ua", ids[0]).to_dict(), "get_other_user": s.get("ub", ids[0]),
            "get_by_seqs": sorted(r.id for r in s.get_by_seqs("ua", list(seq_of.values()))),
            "list": [r.to_dict() for r in s.list("ua", 5, 1, True)],
            "list_current": [r.id for r in s.list("ua", 50, 0, False)],
            "find_by_hash": s.find_by_hash("ua", "turn", "h1").id,
            "count": (s.count("ua"), s.count("ub"), s.count("nobody")),
            "max_seq": to_id[s.max_seq("ua")], "seqs": [to_id[q] for q in s.seqs("ua")],
            "stats": s.stats("ua"), "users": s.users(),
            "vectors": [([to_id[q] for q in qs.tolist()], v.round(3).tolist(), m)
                        for qs, v, m in s.iter_vectors("ua", batch=4)],
            "tokens": [([to_id[q] for q in qs], t) for qs, t in s.iter_tokens("ua", batch=3)],
            "vectors_for": sorted((to_id[int(q)], round(float(v.sum()), 3)) for q, v in zip(vseqs, vecs, strict=True)),
            "window": [to_id[q] for q in s.seqs_in_window("ua", 1002.0, 1203.0, 10)],
            "neighbours": [to_id[q] for q in s.session_neighbours("ua", "s1", seq_of[ids[4]])],
            "texts_for": sorted(s.texts_for("ua", s.seqs("ua")).values()),
            "superseded_seqs": [to_id[q] for q in s.superseded_seqs("ua")],
            "seqs_superseded_by": [to_id[q] for q in s.seqs_superseded_by("ua", ids[1])],
            "columns": [([to_id[q] for q in c[0]], *c[1:]) for c in s.iter_columns("ua", batch=3)],
            "columns_for": (lambda c: ([to_id[q] for q in c[0]], *c[1:]))(
                s.columns_for("ua", [seq_of[i] for i in ids[:4]])),
            "unmark": s.unmark_superseded_by("ua", ids[1]),
            "clear": (s.clear("ub"), s.users()),
        }
        answers.append(answer)
        s.close()
    for name in answers[0]:
        assert answers[0][name] == answers[1][name], name


def test_write_on_one_instance_is_recalled_by_the_other_at_once(pair):
    a, b = pair
    assert b.search("ann", "anything") == []  # B caches ann's (empty) indexes first
    mid = a.add("ann", "My daughter's name is Clementine", session_id="s1")
    hits = b.search("ann", "what is my daughter called?", k=1)
    assert hits and hits[0].id == mid, "visible on B as soon as A's add returned"
    assert b.search("ann", "Clementine", k=1, mode="dense")[0].id == mid
    b.delete("ann", mid)
    assert all(r.id != mid for r in a.search("ann", "daughter Clementine", k=5))
    with pytest.raises(MemoryNotFoundError):
        a.get("ann", mid)
    for s in (a, b):
        assert s.check_consistency("ann")["ok"]


def test_supersede_clear_and_lexical_follow_the_other_instance(pair):
    a, b = pair
    old = a.add_fact("zed", "User lives in Lisbon")
    b.search("zed", "where do I live")  # B builds its indexes (dense and BM25) now
    new = a.add_fact("zed", "User lives in Berlin", supersedes=old)
    hits = b.search("zed", "Berlin", k=5)
    assert [h.id for h in hits][:1] == [new] and old not in [h.id for h in hits]
    b.add("zed", "the quokka photo from Rottnest island")
    assert a.search("zed", "quokka", k=1)[0].text.startswith("the quokka"), "BM25 side caught up on A"
    assert a.clear("zed") == 2 + 1
    assert b.search("zed", "Berlin quokka") == [] and b.stats("zed")["index"]["vectors"] == 0


def test_search_columns_follow_the_other_instance(pair):
    """B's in-memory columns (kind, date, superseded) catch up with A's writes, supersessions and deletions."""
    a, b = pair
    old = a.add_fact("yve", "User works at the harbour office")
    b.search("yve", "where do I work")  # B loads its columns now
    new = a.add_fact("yve", "User works at the library", supersedes=old)
    assert [h.id for h in b.search("yve", "where do I work", k=5, kinds=["fact"])] == [new]
    a.delete("yve", new)  # the older fact is current again, on B too
    assert [h.id for h in b.search("yve", "where do I work", k=5, kinds=["fact"])] == [old]
    turn = a.add("yve", "I painted the fence blue", created_at=1_700_000_000.0)
    assert b.search("yve", "what colour is the fence", k=1)[0].id == turn
    cols = b._users["yve"].columns.columns
    assert cols is not None
    fresh = RecordColumns.load(b.records, "yve")
    seqs = b.records.seqs("yve")
    for flag in (False, True):
        assert cols.usable(seqs, flag, None) == fresh.usable(seqs, flag, None)


def test_concurrent_writers_on_both_instances_stay_consistent(pair):
    a, b = pair
    errors: list[BaseException] = []

    def write(s: MemoryStore, tag: str) -> None:
        try:
            for i in range(12):
                mid = s.add("shared", f"{tag} note number {i}")
                if i % 4 == 3:
                    s.delete("shared", mid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, t)) for s, t in ((a, "alpha"), (b, "beta"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s in (a, b):
        assert s.check_consistency("shared")["ok"]
        assert s.stats("shared")["index"]["vectors"] == 18
        assert len(s.search("shared", "note number", k=50, mode="dense")) == 18


def test_lru_cache_is_bounded_and_evicted_users_reload(pg_dsn, embedder):
    s = open_store(pg_dsn, embedder, cache_vectors=5)
    ids = {u: s.add_many(u, [f"{u} memory {i}" for i in range(3)]) for u in ("u1", "u2", "u3")}
    assert list(s._users) == ["u3"], "older users evicted once over 5 vectors"
    assert {h.id for h in s.search("u1", "u1 memory", k=5)} == set(ids["u1"])
    assert list(s._users) == ["u1"]
    s.close()


def test_nothing_is_written_to_disk(pg_dsn, embedder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = open_store(pg_dsn, embedder)
    s.add("disk", "no files please")
    s.flush()
    s.rebuild("disk")
    assert s.search("disk", "files", k=1)
    s.close()
    assert list(tmp_path.iterdir()) == []


def test_schema_is_versioned_and_migrates_once_under_concurrency(pg_dsn, embedder):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresRecordStore(pg_dsn).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]  # instances starting at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert migrate(conn) == SCHEMA_VERSION, "already current: nothing applied"
        conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this Parley"):
        PostgresRecordStore(pg_dsn)


def test_dsn_password_never_shown(postgres):
    assert redact_dsn("postgresql://bob:s3cr3t@db:5432/mem") == "postgresql://bob:***@db:5432/mem"
    assert redact_dsn("host=db password=s3cr3t user=bob") == "host=db password=*** user=bob"
    assert redact_dsn("postgresql://bob@db/mem") == "postgresql://bob@db/mem"
    bad = f"postgresql://nobody:s3cr3t@127.0.0.1:{postgres.port}/no_such_db"
    with pytest.raises(ConnectionError) as err:
        PostgresRecordStore(bad, timeout_s=3)
    assert "s3cr3t" not in str(err.value) and "nobody:***@" in str(err.value)


def test_memory_cli_on_postgresql(pg_dsn, embedder):
    with open_store(pg_dsn, embedder) as s:
        mid = s.add("cli", "I keep bees on the roof")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PARLEY_MEMORY_DB": pg_dsn}

    def cli(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.memory", *args], env={**env, **(extra or {})},
                              capture_output=True, text=True, timeout=120, check=False)

    listed = cli("list", "--user", "cli", "--json")  # the URL from PARLEY_MEMORY_DB
    assert listed.returncode == 0, listed.stderr
    assert [m["id"] for m in json.loads(listed.stdout)] == [mid]
    bad = pg_dsn.replace("parley@", "parley:hunter2@").rsplit("/", 1)[0] + "/missing_db"
    failed = cli("--memory_db", bad, "users")
    assert failed.returncode == 2 and "missing_db" in failed.stderr and "hunter2" not in failed.stderr
