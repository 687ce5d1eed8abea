"""The search's in-memory columns (agent/memory/columns.py) stay in step with the records.

Real SQLite, FAISS and embedder: every write, supersession and deletion made after a user's
columns were loaded must show in the next search, and the columns must equal a fresh read
of the records; another user's memories never show.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.memory import MemoryStore
from agent.memory.columns import RecordColumns
from agent.memory.columns_state import SQLColumns
from agent.memory.records import SQLiteRecordStore

DAY = 86400.0
T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path, embedder):
    s = MemoryStore(tmp_path / "mem", embedder=embedder)
    yield s
    s.close()


def _columns_match_records(store: MemoryStore, user: str) -> None:
    """The columns kept up to date by the writes equal the ones a fresh load reads from SQLite."""
    assert store.wait_for_indexes(user, timeout=30)
    kept = store._users[user].columns.columns
    assert kept is not None, "the search should have loaded the user's columns"
    fresh = RecordColumns.load(store.records, user)
    seqs = store.records.seqs(user)
    assert kept.size == fresh.size == len(seqs)
    for include_superseded in (False, True):
        for kinds in (None, ["fact"], ["turn"]):
            a, b = kept.usable(seqs, include_superseded, kinds), fresh.usable(seqs, include_superseded, kinds)
            assert (a.seqs, a.created, a.kinds) == (b.seqs, b.created, b.kinds)


def test_writes_supersessions_and_deletes_show_in_the_next_search(store):
    store.add_many("alice", [{"text": f"Small talk number {i} about the weather", "created_at": T0 + i}
                             for i in range(30)])
    store.add("bob", "Bob's cat is called Whiskers", created_at=T0)
    store.add("bob", "Bob lives in Oslo", kind="fact", created_at=T0)
    assert store.search("alice", "the weather", k=3)  # loads alice's columns
    assert store._users["alice"].columns.columns is not None

    # A write after the columns were loaded is found.
    cat = store.add("alice", "My cat is called Luna", created_at=T0 + 100)
    hits = store.search("alice", "what is my cat called?", k=3)
    assert hits[0].id == cat
    assert all(h.user_id == "alice" and "Whiskers" not in h.text for h in hits)

    # A fact, then a newer one that supersedes it: only the current one shows unless asked.
    old = store.add_fact("alice", "I live in Lisbon", created_at=T0 + 200)
    new = store.add_fact("alice", "I live in Porto now", supersedes=old, created_at=T0 + 300)
    current = [h.id for h in store.search("alice", "where do I live?", k=5, kinds=["fact"])]
    assert current == [new]
    everything = {h.id for h in store.search("alice", "where do I live?", k=5, kinds=["fact"],
                                              include_superseded=True)}
    assert everything == {old, new}
    _columns_match_records(store, "alice")

    # Deleting the newer fact makes the older one current again.
    store.delete("alice", new)
    assert [h.id for h in store.search("alice", "where do I live?", k=5, kinds=["fact"])] == [old]

    # A deleted turn is gone from the results.
    store.delete("alice", cat)
    assert cat not in {h.id for h in store.search("alice", "what is my cat called?", k=10)}
    _columns_match_records(store, "alice")

    # Bob's memories never show for alice, whatever she asks.
    for q in ("Whiskers", "Oslo", "where does Bob live?"):
        assert all(h.user_id == "alice" for h in store.search("alice", q, k=40, include_superseded=True))


def test_columns_survive_the_user_being_cleared_and_refilled(store):
    store.add("carol", "I play the cello", created_at=T0)
    assert store.search("carol", "which instrument do I play?", k=1)
    store.clear("carol")
    assert store.search("carol", "which instrument do I play?", k=1) == []
    mid = store.add("carol", "I took up the violin", created_at=T0 + 10)
    assert [h.id for h in store.search("carol", "which instrument do I play?", k=1)] == [mid]
    _columns_match_records(store, "carol")


def test_window_matches_the_sql_query_order_ties_included(store):
    # Many memories share a date: newest first, the higher seq first among equal dates, as SQLite orders them.
    items = [{"text": f"note {i}", "created_at": T0 + (i // 3) * DAY} for i in range(40)]
    store.add_many("dave", items)
    store.search("dave", "note", k=1)
    cols = store._users["dave"].columns.columns
    assert cols is not None
    for start, end, limit in [(T0, T0 + 5 * DAY, 100), (T0 + DAY, T0 + 9 * DAY, 7), (T0 - DAY, T0, 10),
                              (T0, T0 + 100 * DAY, 1)]:
        assert cols.in_window(start, end, limit) == store.records.seqs_in_window("dave", start, end, limit)


def test_time_window_search_finds_a_memory_written_after_the_load(store):
    store.add_many("erin", [{"text": f"Day {i}: ordinary errands", "created_at": T0 + i * DAY} for i in range(20)])
    now = T0 + 30 * DAY
    store.search("erin", "errands", k=1, now=now)
    mid = store.add("erin", "I went to the dentist", created_at=now - DAY + 3600)  # "yesterday"
    hits = store.search("erin", "what did I do yesterday?", k=1, now=now)
    assert hits and hits[0].id == mid


def test_columns_out_of_order_rows_and_removal():
    cols = RecordColumns()
    cols.add([5, 9], ["turn", "fact"], [50.0, 90.0])
    cols.add([7, 12], ["turn", "turn"], [70.0, 120.0], [True, False])  # 7 arrives after 9 (another instance)
    cols.add([13], ["note"], [130.0])
    c = cols.usable([12, 5, 7, 9, 13, 99], include_superseded=True, kinds=None)
    assert (c.seqs, c.created, c.kinds) == ([5, 7, 9, 12, 13], [50.0, 70.0, 90.0, 120.0, 130.0],
                                            ["turn", "turn", "fact", "turn", "note"])
    assert cols.usable([5, 7, 9], include_superseded=False, kinds=["turn"]).seqs == [5]
    cols.remove([9, 7, 1000])
    assert cols.size == 3
    assert cols.usable(range(20), include_superseded=True, kinds=None).seqs == [5, 12, 13]
    assert cols.in_window(0.0, 125.0, 10) == [12, 5]
    grown = RecordColumns()
    seqs = np.arange(1, 5001)
    for lo in range(0, 5000, 7):  # many small appends, as turns arrive one by one
        part = seqs[lo:lo + 7].tolist()
        grown.add(part, ["turn"] * len(part), [float(s) for s in part])
    assert grown.size == 5000
    assert grown.usable([1, 2500, 5000, 5001], True, None).seqs == [1, 2500, 5000]


class GatedRecords(SQLiteRecordStore):
    """The real SQLite store; reading a user's columns waits until the test opens the gate."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.gate = threading.Event()

    def iter_columns(self, user_id, batch=50000):
        assert self.gate.wait(30)
        yield from super().iter_columns(user_id, batch)


def test_changes_made_while_a_large_users_columns_load_are_kept(tmp_path, embedder):
    records = GatedRecords(tmp_path / "mem" / "memory.sqlite3")
    store = MemoryStore(tmp_path / "mem", embedder=embedder, records=records, lexical_sync_max=10)
    texts = [f"Entry {i}: groceries and chores" for i in range(40)]
    ids = store.add_many("fay", [{"text": t, "created_at": T0 + i} for i, t in enumerate(texts)])
    old = store.add_fact("fay", "I drive a red bicycle", created_at=T0 + 50)
    hits = store.search("fay", "groceries", k=3)  # starts the load (held at the gate): read from SQLite
    assert store._users["fay"].columns.building and hits
    # While the load waits: a write, a supersession, a deletion.
    boat = store.add("fay", "I bought a sailing boat called Petrel", created_at=T0 + 60)
    new = store.add_fact("fay", "I drive a green bicycle now", supersedes=old, created_at=T0 + 70)
    store.delete("fay", ids[3])
    during = [h.id for h in store.search("fay", "what is my boat called?", k=3)]
    records.gate.set()
    assert store.wait_for_indexes("fay", timeout=30)
    assert store._users["fay"].columns.columns is not None
    _columns_match_records(store, "fay")
    assert [h.id for h in store.search("fay", "what is my boat called?", k=3)] == during and during[0] == boat
    assert [h.id for h in store.search("fay", "what do I drive?", k=3, kinds=["fact"])] == [new]
    assert ids[3] not in {h.id for h in store.search("fay", "Entry 3 groceries chores", k=40)}
    store.close()


def test_database_and_memory_columns_answer_alike(store):
    store.add_many("gus", [{"text": f"item {i}", "created_at": T0 + (i // 4) * DAY} for i in range(30)])
    a = store.add_fact("gus", "I live in Rome", created_at=T0)
    store.add_fact("gus", "I live in Milan", supersedes=a, created_at=T0 + DAY)
    store.search("gus", "item", k=1)
    mem, sql = store._users["gus"].columns.columns, SQLColumns(store.records, "gus")
    assert mem is not None
    seqs = [*store.records.seqs("gus"), 10_000]
    for flag in (False, True):
        for kinds in (None, ["fact"], ["turn", "fact"], ["nothing"]):
            assert mem.usable(seqs, flag, kinds) == sql.usable(seqs, flag, kinds)
    for start, end, limit in [(T0, T0 + 3 * DAY, 50), (T0, T0 + 9 * DAY, 5)]:
        assert mem.in_window(start, end, limit) == sql.in_window(start, end, limit)
