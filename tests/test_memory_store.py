"""MemoryStore on real SQLite, real FAISS and the real default embedder."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.embedding import load_embedder
from agent.ids import InvalidIdError
from agent.memory import MemoryNotFoundError, MemoryRecord, MemoryStore
from agent.memory.timewindow import find_time_window
from tests.support.paths import ROOT

BAD_USER_IDS = ["../x", "", "a/b", "x" * 200, ".", "..", "a b", None]


@pytest.fixture(scope="session")
def embedder():
    return load_embedder()


@pytest.fixture
def store(tmp_path, embedder):
    s = MemoryStore(tmp_path / "mem", embedder=embedder)
    yield s
    s.close()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# -- basics ---------------------------------------------------------------------------------------
def test_add_get_list_search_delete(store):
    mid = store.add("alice", "I adopted a grey cat named Luna", session_id="s1")
    rec = store.get("alice", mid)
    assert isinstance(rec, MemoryRecord)
    assert (rec.text, rec.kind, rec.session_id) == ("I adopted a grey cat named Luna", "turn", "s1")
    assert rec.user_id == "alice"
    assert rec.metadata["session_id"] == "s1"
    store.add("alice", "My favourite food is ramen", metadata={"lang": "en"})
    hits = store.search("alice", "what is my cat called?", k=2)
    assert hits[0].id == mid and hits[0].score > 0
    assert [r.id for r in store.list("alice")][1] == mid  # newest first
    store.delete("alice", mid)
    with pytest.raises(MemoryNotFoundError):
        store.get("alice", mid)
    with pytest.raises(MemoryNotFoundError):
        store.delete("alice", mid)
    assert store.check_consistency("alice")["ok"]


def test_add_many_mixed_items_and_stats(store):
    ids = store.add_many(
        "bob",
        [
            "plain string turn",
            {"text": "User is vegetarian", "kind": "fact"},
            {"text": "dated turn", "created_at": datetime(2025, 1, 2, tzinfo=UTC), "session_id": "s9"},
        ],
    )
    assert len(ids) == 3 and len(set(ids)) == 3
    assert store.get("bob", ids[2]).created_at == datetime(2025, 1, 2, tzinfo=UTC).timestamp()
    st_ = store.stats("bob")
    assert st_["total"] == 3 and st_["by_kind"] == {"turn": 2, "fact": 1} and st_["sessions"] == 1
    assert store.users() == ["bob"]
    with pytest.raises(ValueError):
        store.add("bob", "   ")
    with pytest.raises(ValueError):
        store.add("bob", "x", kind="Bad Kind!")
    with pytest.raises(ValueError):
        store.add("bob", "x", kind="turn\n")  # "$" alone would let a final newline through


def test_invalid_user_ids_rejected_everywhere(store):
    mid = store.add("alice", "hello")
    for bad in BAD_USER_IDS:
        for call in (
            lambda b=bad: store.add(b, "x"),
            lambda b=bad: store.add_many(b, ["x"]),
            lambda b=bad: store.search(b, "x"),
            lambda b=bad: store.list(b),
            lambda b=bad: store.get(b, mid),
            lambda b=bad: store.delete(b, mid),
            lambda b=bad: store.clear(b),
            lambda b=bad: store.stats(b),
        ):
            with pytest.raises(InvalidIdError):
                call()


def test_bad_and_unknown_memory_ids(store):
    store.add("alice", "hello")
    for bad in ["", "../etc/passwd", "xyz", "A" * 32, 123, "0" * 32 + "\n"]:
        with pytest.raises(InvalidIdError):
            store.get("alice", bad)
    with pytest.raises(MemoryNotFoundError, match="no memory"):
        store.get("alice", "0" * 32)
    assert issubclass(MemoryNotFoundError, KeyError)


def test_user_isolation_on_every_method(store):
    a = store.add("alice", "Alice's secret: the safe code is 4521")
    b = store.add("bob", "Bob likes fishing on the lake")
    assert all(r.user_id == "bob" for r in store.search("bob", "safe code secret", k=10))
    assert [r.id for r in store.list("bob")] == [b]
    with pytest.raises(MemoryNotFoundError):
        store.get("bob", a)
    with pytest.raises(MemoryNotFoundError):
        store.delete("bob", a)
    with pytest.raises(MemoryNotFoundError):
        store.add_fact("bob", "User likes lakes", supersedes=a)
    assert store.stats("bob")["total"] == 1
    assert store.clear("bob") == 1
    assert store.get("alice", a).text.startswith("Alice")
    assert store.search("bob", "fishing") == []


# -- facts ----------------------------------------------------------------------------------------
def test_fact_exact_and_near_duplicates(store):
    f1 = store.add_fact("u", "User lives in Beijing")
    assert store.add_fact("u", "user lives in beijing!") == f1  # same normalised text
    assert store.add_fact("u", "The user lives in Beijing.") == f1  # near duplicate (cosine)
    assert store.add("u", "User lives in Beijing", kind="fact") == f1
    assert store.stats("u")["total"] == 1
    # turns are events: never de-duplicated
    t1, t2 = store.add("u", "hello"), store.add("u", "hello")
    assert t1 != t2


def test_fact_supersede_automatic_and_explicit(store):
    old = store.add_fact("u", "User lives in Beijing")
    new = store.add_fact("u", "User lives in Shanghai")
    assert new != old
    assert store.get("u", old).superseded_by == new
    hits = store.search("u", "where does the user live", k=5)
    assert new in [h.id for h in hits] and old not in [h.id for h in hits]
    assert old in [h.id for h in store.search("u", "where does the user live", k=5, include_superseded=True)]
    assert {r.id for r in store.list("u")} == {old, new}  # history kept
    assert [r.id for r in store.list("u", include_superseded=False)] == [new]
    # two things that both hold are not superseded
    a = store.add_fact("u", "User is allergic to peanuts")
    b = store.add_fact("u", "User's sister is named Anna")
    c = store.add_fact("u", "User's brother is named Tom")
    assert all(store.get("u", x).superseded_by is None for x in (a, b, c))
    # explicit: the caller (the graph's LLM) decides
    d = store.add_fact("u", "User moved to Hangzhou", supersedes=new)
    assert store.get("u", new).superseded_by == d
    # deleting the newer fact makes the older one current again
    store.delete("u", d)
    assert store.get("u", new).superseded_by is None


def test_fact_supersede_chinese(store):
    old = store.add_fact("u", "用户住在北京")
    new = store.add_fact("u", "用户住在上海")
    assert store.get("u", old).superseded_by == new
    x = store.add_fact("u", "用户的妹妹叫小红")
    y = store.add_fact("u", "用户的哥哥叫小明")
    assert store.get("u", x).superseded_by is None and x != y


# -- time awareness -------------------------------------------------------------------------------
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC).timestamp()  # a Monday


def test_time_window_parsing():
    day = 86400
    w = find_time_window("what did I say yesterday?", NOW, UTC)
    assert w and w.contains(NOW - day) and not w.contains(NOW)
    w = find_time_window("上周我去哪了", NOW, UTC)
    assert w and w.contains(NOW - 7 * day) and not w.contains(NOW) and not w.contains(NOW - 15 * day)
    assert find_time_window("昨天", NOW, UTC).contains(NOW - day)
    assert find_time_window("3天前说了什么", NOW, UTC).contains(NOW - 3 * day)
    assert find_time_window("two days ago", NOW, UTC).contains(NOW - 2 * day)
    assert find_time_window("last month", NOW, UTC).contains(NOW - 30 * day)
    assert find_time_window("what is my cat called", NOW, UTC) is None


def test_time_aware_search_prefers_the_window(store):
    day = 86400
    old = store.add("u", "We went to an Italian restaurant called Roma", created_at=NOW - 20 * day)
    mid = store.add("u", "Dinner at a sushi restaurant named Sakura", created_at=NOW - 1 * day)
    store.add("u", "I like restaurants with outdoor seating", created_at=NOW - 40 * day)
    assert store.search("u", "which restaurant did I go to yesterday?", k=1, now=NOW, tz=UTC)[0].id == mid
    assert store.search("u", "昨天我去了哪家餐厅", k=1, now=NOW, tz=UTC)[0].id == mid
    assert store.search("u", "restaurant three weeks ago: Roma?", k=3, now=NOW, tz=UTC)[0].id == old


def test_neighbouring_turns_are_pulled_up(store):
    t0 = NOW - 5000
    store.add("u", "I went to see Dr. Patel about my knee", session_id="s", created_at=t0)
    advice = store.add("u", "She said physio twice a week and no running", session_id="s", created_at=t0 + 60)
    for i in range(30):
        store.add("u", f"Unrelated chat number {i} about the weather and movies", created_at=t0 - 1000 - i)
    ids = [h.id for h in store.search("u", "what did Dr. Patel say about my knee?", k=3, now=NOW)]
    assert advice in ids


# -- persistence, rebuild, crash ----------------------------------------------------------------
def test_reopen_and_index_rebuilt_when_missing_corrupt_or_stale(tmp_path, embedder):
    d = tmp_path / "mem"
    s = MemoryStore(d, embedder=embedder)
    ids = s.add_many("alice", [f"memory number {i} about topic {i % 7}" for i in range(40)])
    s.close()
    index = d / "index" / "alice.faiss"
    assert index.exists() and index.with_suffix(".json").exists()

    def reopen() -> MemoryStore:
        s2 = MemoryStore(d, embedder=embedder)
        assert s2.check_consistency("alice")["ok"]
        assert s2.search("alice", "memory number 5 about topic 5", k=1)[0].id == ids[5]
        return s2

    index.unlink()
    reopen().close()
    index.write_bytes(os.urandom(4096))  # garbage
    reopen().close()
    index.write_bytes(index.read_bytes()[:100] if index.exists() else b"")  # truncated
    reopen().close()
    # stale: rows written and deleted behind the saved index's back
    saved, saved_meta = index.read_bytes(), index.with_suffix(".json").read_bytes()
    s3 = MemoryStore(d, embedder=embedder)
    new = s3.add("alice", "a memory the saved index does not know")
    s3.delete("alice", ids[0])
    s3.close()
    index.write_bytes(saved)
    index.with_suffix(".json").write_bytes(saved_meta)
    s4 = reopen()
    assert s4.get("alice", new) and s4.check_consistency("alice")["ok"]
    with pytest.raises(MemoryNotFoundError):
        s4.get("alice", ids[0])
    s4.close()


_WRITER = """
import sys
from agent.memory import MemoryStore
s = MemoryStore(sys.argv[1])
i = 0
while True:
    mid = s.add("crash-user", f"memory {i}: the quick brown fox number {i}", session_id="s")
    print(mid, flush=True)
    i += 1
"""

_READER = """
import json, sys
from agent.memory import MemoryStore
s = MemoryStore(sys.argv[1])
ids = [r.id for r in s.list("crash-user", limit=1000000)]
print(json.dumps({"ids": ids, "consistency": s.check_consistency("crash-user")}))
s.close()
"""


def test_kill_9_mid_write_loses_no_acknowledged_memory(tmp_path):
    d = str(tmp_path / "mem")
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, d],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    acked: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    # Past AUTOSAVE_MIN writes, so an index file exists and is stale when the kill lands.
    while len(acked) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) >= 300, "writer did not get going"
    out = subprocess.run(
        [sys.executable, "-c", _READER, d], capture_output=True, text=True, env=_env(), timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(acked) <= set(got["ids"])
    assert len(got["ids"]) - len(acked) <= 1  # at most the one being written when killed
    assert got["consistency"]["ok"], got["consistency"]


# -- concurrency, async ---------------------------------------------------------------------------
def test_threads_add_and_search_concurrently(store):
    errors: list[BaseException] = []

    def writer(u: str) -> None:
        try:
            for i in range(15):
                store.add(u, f"{u} note {i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(15):
                store.search("t0", "note", k=3)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(3)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(3):
        assert store.stats(f"t{i}")["total"] == 15 and store.check_consistency(f"t{i}")["ok"]


async def test_async_helpers(store):
    mid = await store.aadd("alice", "async memory about kayaking")
    ids = await store.aadd_many("alice", ["second async memory"])
    hits, _ = await asyncio.gather(store.asearch("alice", "kayaking", k=1), asyncio.sleep(0))
    assert hits[0].id == mid and len(ids) == 1


def test_precomputed_vectors_and_ivf_switch(tmp_path, embedder, monkeypatch):
    from agent.memory import vector_index

    monkeypatch.setattr(vector_index, "IVF_MIN", 500)
    s = MemoryStore(tmp_path / "mem", embedder=embedder)
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((800, embedder.dim)).astype(np.float32)
    s._add_precomputed("big", [f"synthetic {i}" for i in range(800)], vecs)
    real = s.add("big", "the lighthouse keeper painted the door red")
    assert s.stats("big")["index"]["type"] == "ivf"
    assert s.check_consistency("big")["ok"]
    assert s.search("big", "lighthouse keeper door", k=1)[0].id == real
    s.close()
    s2 = MemoryStore(tmp_path / "mem", embedder=embedder)
    assert s2.stats("big")["index"]["type"] == "ivf" and s2.check_consistency("big")["ok"]
    s2.close()


# -- property test --------------------------------------------------------------------------------
_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "delete", "fact", "clear"]), st.sampled_from(["u1", "u2"]), st.integers(0, 5)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_random_operations_keep_sqlite_and_faiss_consistent(tmp_path_factory, embedder, ops):
    d = tmp_path_factory.mktemp("prop")
    s = MemoryStore(d, embedder=embedder)
    owned: dict[str, set[str]] = {"u1": set(), "u2": set()}
    words = ["apples", "rain in spring", "the blue car", "jazz music", "chess openings", "river boats"]
    for op, user, n in ops:
        other = "u2" if user == "u1" else "u1"
        if op == "add":
            owned[user].add(s.add(user, f"{words[n]} {len(owned[user])}"))
        elif op == "fact":
            owned[user].add(s.add_fact(user, f"User likes {words[n]}"))
        elif op == "delete" and owned[user]:
            victim = sorted(owned[user])[n % len(owned[user])]
            with pytest.raises(MemoryNotFoundError):
                s.delete(other, victim)
            s.delete(user, victim)
            owned[user].discard(victim)
        elif op == "clear":
            s.clear(user)
            owned[user] = set()
    s.close()
    s = MemoryStore(d, embedder=embedder)  # and after a restart
    for user in ("u1", "u2"):
        assert s.check_consistency(user)["ok"]
        assert {r.id for r in s.list(user, limit=1000)} == owned[user]
        assert {r.id for r in s.search(user, "apples jazz", k=50)} <= owned[user]
    s.close()
