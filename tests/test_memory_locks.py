"""Per-user locks in MemoryStore, memory's own embedder, and the second BM25 hop."""

from __future__ import annotations

import threading
import time

from agent.config import AgentSettings
from agent.embedding import MEMORY_EMBEDDING_MODEL
from agent.memory import MemoryStore, open_memory, search_steps
from agent.memory.lexical import tokenize
from agent.memory.recall import RecallSettings


def test_one_users_lock_does_not_stall_another_users_search(tmp_path, embedder):
    store = MemoryStore(tmp_path / "mem", embedder=embedder)
    store.add_many("alice", ["I adopted a cat called Miso.", "My knee hurts after running."])
    store.add_many("bob", ["My dog is called Rex.", "I play the cello on Sundays."])
    alice = store.cache.get("alice")
    assert alice is not None
    held, release = threading.Event(), threading.Event()

    def hold_alice() -> None:  # what a long write or index build of alice's does to her lock
        with alice.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_alice)
    holder.start()
    held.wait(5)
    try:
        t = time.perf_counter()
        hits = store.search("bob", "what is my dog called", k=1)
        assert time.perf_counter() - t < 5, "bob's search waited for alice's lock"
        assert hits and "Rex" in hits[0].text

        done: list[object] = []
        waiter = threading.Thread(target=lambda: done.append(store.search("alice", "my cat", k=1)))
        waiter.start()
        waiter.join(0.5)
        assert not done, "alice's own search must wait while her indexes are held"
    finally:
        release.set()
        holder.join()
    waiter.join(10)
    assert done and "Miso" in done[0][0].text  # type: ignore[index]
    store.close()


def test_open_memory_uses_memorys_own_embedder(tmp_path):
    config = AgentSettings(memory_dir=str(tmp_path / "mem"))
    assert config.embedding_model_name == "minilm"
    store = open_memory(config)
    try:
        assert config.memory_embedding_model_name == MEMORY_EMBEDDING_MODEL
        assert store.embedder.name == "use-multilingual" and store.embedder.dim == 512
        store.add("carol", "我们家的猫叫豆豆。")
        assert store.search("carol", "我的猫叫什么名字?", k=1)[0].text == "我们家的猫叫豆豆。"
        assert store.stats("carol")["index"]["model"] == "use-multilingual"
    finally:
        store.close()


def test_second_hop_joins_a_relation_to_a_name_said_elsewhere(tmp_path, embedder):
    # The default knobs (memory's default embedder's), which have the hop on; MiniLM's have it off.
    store = MemoryStore(tmp_path / "mem", embedder=embedder, params=RecallSettings())
    assert store.params.bridge_weight > 0
    dinner = "My cousin Sam came round for dinner tonight, we talked for hours."
    news = "Sam told me they have just started learning pottery, every Tuesday evening."
    # The same news about someone else, 150 times (names are rare words under 2% of memories).
    others = ["Alex told me they have just started learning pottery, every Tuesday evening."] * 150
    store.add_many("dave", [dinner, news, *others])
    q = "What has my cousin started learning?"

    st = store.cache.get("dave")
    assert st is not None
    lexical_index = store.cache.lexical("dave", st)
    tokens = tokenize(q)
    scored = lexical_index.score(tokens)
    first = scored.top(50)
    hop = search_steps.second_hop(store.records, "dave", store.params, lexical_index, scored, first, 50)
    texts = {r.seq: r.text for r in store.records.get_by_seqs("dave", [s for s, _ in hop[:2]])}
    assert [texts[s] for s, _ in hop[:2]] == [dinner, news], "the hop carries 'sam' from the dinner turn"

    store.close()  # through search, the hop's effect is measured by bench.memory_long (multi-hop questions)
