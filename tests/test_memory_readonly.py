"""Read-only memory calls leave no trace, and idle users' indexes do not stay in the process forever.

Issue 16, defect 5: GET /api/memory/stats, GET /api/memory?q= and DELETE of an unknown
id under a never-seen user id each wrote ``<id>.faiss`` and ``<id>.json`` and kept the
user's state in the process, never evicted (400 calls made 800 files).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from agent.memory import MemoryNotFoundError, MemoryStore
from tests.support.in_process import running_server


def _index_files(store: MemoryStore) -> list[str]:
    folder = store.path / "index"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_reads_under_unknown_users_write_nothing_and_cache_nothing(tmp_path, embedder):
    store = MemoryStore(tmp_path / "mem", embedder=embedder)
    store.add("alice", "Alice keeps bees on her roof")
    store.flush()
    before = _index_files(store)
    assert before == ["alice.faiss", "alice.json"]
    for i in range(50):
        ghost = f"ghost{i}"
        assert store.stats(ghost)["total"] == 0
        assert store.stats(ghost)["index"]["vectors"] == 0
        assert store.search(ghost, "bees on the roof", k=5) == []
        assert store.search(ghost, "bees", k=5, mode="dense") == []
        with pytest.raises(MemoryNotFoundError):
            store.delete(ghost, "0" * 32)
        assert store.check_consistency(ghost)["ok"]
        store.preload(ghost)
        assert store.list(ghost) == []
    store.flush()
    assert _index_files(store) == before, "read-only calls must not create index files"
    assert list(store._users) == ["alice"], "read-only calls must not keep state for unknown users"
    # The known user still works, and a first write under a new id does create that user.
    assert store.search("alice", "who keeps bees?", k=1)[0].text.startswith("Alice")
    store.add("ghost0", "now I exist")
    assert store.search("ghost0", "exist", k=1)[0].text == "now I exist"
    store.close()
    assert "ghost0.faiss" in _index_files(store)


def test_idle_users_are_evicted_and_their_unsaved_writes_kept(tmp_path, embedder):
    store = MemoryStore(tmp_path / "mem", embedder=embedder, cache_users=3)
    for i in range(8):
        store.add(f"u{i}", f"user {i} likes the number {i}")
        assert len(store._users) <= 3
    assert list(store._users) == ["u5", "u6", "u7"]
    # Evicted users were saved on the way out and load again with everything they had.
    for i in range(8):
        assert store.search(f"u{i}", f"the number {i}", k=1)[0].text == f"user {i} likes the number {i}"
        assert store.check_consistency(f"u{i}")["ok"]
        assert len(store._users) <= 3
    assert _index_files(store)[:2] == ["u0.faiss", "u0.json"]
    store.close()


def _http(method: str, url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


async def test_http_reads_for_never_seen_users_create_no_files_with_fake_engines(
        make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        store = srv.agent.memory
        for i in range(20):
            base = f"{srv.http_url}/api/memory"
            assert (await asyncio.to_thread(_http, "GET", f"{base}/stats?user_id=nobody{i}"))[0] == 200
            status, body = await asyncio.to_thread(_http, "GET", f"{base}?user_id=nobody{i}&q=anything")
            assert status == 200 and body["items"] == []
            assert (await asyncio.to_thread(_http, "DELETE", f"{base}/{'a' * 32}?user_id=nobody{i}"))[0] == 404
        assert _index_files(store) == []
        assert not any(u.startswith("nobody") for u in store._users)


def test_large_users_bm25_is_built_off_the_search_path(tmp_path, embedder):
    rows = [{"text": f"note {i} about the weather", "session_id": f"s{i // 10}"} for i in range(60)]
    rows[17] = {"text": "the zebra-striped umbrella is in the hallway closet", "session_id": "s1"}
    d = tmp_path / "mem"
    with MemoryStore(d, embedder=embedder) as s:
        s.add_many("big", rows)
    store = MemoryStore(d, embedder=embedder, lexical_sync_max=10)  # 60 memories count as large here
    assert store.search("big", "where is the umbrella?", k=3)  # answered at once (dense) while BM25 builds
    store.add("big", "the zebra mug is in the dishwasher", session_id="s9")  # written during the build
    assert store.wait_for_indexes("big", timeout=30)
    hits = store.search("big", "zebra", k=2, mode="hybrid")
    assert {h.text for h in hits} == {rows[17]["text"], "the zebra mug is in the dishwasher"}
    assert store.check_consistency("big")["ok"]
    store.close()
