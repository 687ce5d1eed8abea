"""Two ``server.py`` processes sharing one PostgreSQL memory (``--memory_db``), over their real APIs.

The guarantee under test (README, "Running several instances"): a memory whose
write has been acknowledged by one instance is recalled by the next search on any
other instance, with no delay, and a deletion likewise; killing an instance loses
nothing it acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.fakes.openai_server import FakeOpenAI
from tests.support.server_process import ServerProcess
from tests.support.voice_client import VoiceClient, type_until_stopped

pytestmark = pytest.mark.slow

ENV = {"LLM_API_KEY": "test-llm-key", "HF_HUB_OFFLINE": "1"}


def api(method: str, base_url: str, path: str, **query: object) -> dict:
    url = f"{base_url}{path.lstrip('/')}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=15) as resp:
        return json.loads(resp.read())


def listed(base_url: str, user: str) -> dict[str, str]:
    """id -> text of the user's memories, as this instance's API lists them."""
    return {m["id"]: m["text"] for m in api("GET", base_url, "/api/memory", user_id=user, limit=500)["items"]}


def recalled(base_url: str, user: str, q: str, k: int = 10) -> dict[str, str]:
    """id -> text of this instance's search results (the FAISS + BM25 recall path)."""
    return {m["id"]: m["text"] for m in api("GET", base_url, "/api/memory", user_id=user, q=q, k=k)["items"]}


def ws_url(server: ServerProcess) -> str:
    return server.url.replace("http://", "ws://") + "ws"


@pytest.fixture(scope="module")
def instances(postgres, tmp_path_factory) -> Iterator[tuple[ServerProcess, ServerProcess, FakeOpenAI, Path, str]]:
    """Instances A and B on one fresh database (started in parallel), a fake LLM, and the unused memory dir."""
    name = f"multi_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = postgres.dsn.rsplit("/", 1)[0] + "/" + name
    memory_dir = tmp_path_factory.mktemp("unused-memory-dir")
    with FakeOpenAI() as fake:
        args = ["--lm_model_url", fake.base_url, "--lm_model_name", "fake-model", "--lm_tool_routing", "off",
                "--extract_facts", "off", "--memory_min_score", "0.2", "--max_turns_per_minute", "100000",
                "--tts", "espeak", "--log_level", "WARNING", "--memory_dir", str(memory_dir)]
        # The URL comes from the environment for A and from the flag for B: both ways must work.
        a = ServerProcess(args, env={**ENV, "PARLEY_MEMORY_DB": dsn})
        b = ServerProcess([*args, "--memory_db", dsn], env=ENV)
        errors: list[BaseException] = []

        def start(s: ServerProcess) -> None:
            try:
                s.__enter__()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            if errors:
                raise errors[0]
            yield a, b, fake, memory_dir, dsn
        finally:
            a.__exit__()
            b.__exit__()
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_told_to_a_recalled_by_b_and_deleted_on_b_gone_from_a(instances):
    a, b, fake, memory_dir, _ = instances
    assert recalled(b.url, "ann", "cat") == {}, "B caches ann's (empty) indexes before A writes"
    assert recalled(a.url, "ann", "cat") == {}

    client = await VoiceClient.open(ws_url(a), "ann", audio_output=False)
    await client.say_text("my cat is named Mochi and she loves tuna")
    await client.wait_for("response.done", timeout=30)
    await client.close()
    deadline = time.monotonic() + 15  # the turn is written just after the reply; acknowledged = listed by A
    while not (mochi := [i for i, t in listed(a.url, "ann").items() if "Mochi" in t]):
        assert time.monotonic() < deadline, "A never stored the turn"
        await asyncio.sleep(0.05)
    # No waiting from here on: B must see it on its very next search.
    assert mochi[0] in recalled(b.url, "ann", "what is my cat called?"), "B's first recall after A's write"

    # And in a conversation on B: the memory reaches the LLM's prompt there.
    client = await VoiceClient.open(ws_url(b), "ann", audio_output=False)
    await client.say_text("what is my cat called?")
    await client.wait_for("response.done", timeout=30)
    await client.close()
    assert "Mochi" in fake.system_prompts()[-1], "B recalled A's memory into its prompt"

    api("DELETE", b.url, f"/api/memory/{mochi[0]}", user_id="ann")
    assert mochi[0] not in recalled(a.url, "ann", "cat Mochi tuna"), "deleted on B: gone from A's next recall"
    assert mochi[0] not in listed(a.url, "ann")
    assert list(memory_dir.iterdir()) == [], "instances keep nothing on disk"


async def test_kill_9_of_one_instance_loses_nothing_acknowledged(instances, embedder):
    from agent.memory import MemoryStore
    from agent.memory.records_pg import PostgresRecordStore

    a, b, _, _, dsn = instances
    users = [f"k{i}" for i in range(3)]
    seen: dict[str, set[str]] = {u: set() for u in users}
    stop = asyncio.Event()
    # Every user talks to both instances at once, so the killed one dies mid-write for users B serves too.
    drivers = [asyncio.create_task(type_until_stopped(ws_url(s), u, stop)) for u in users for s in (a, b)]
    started = time.monotonic()
    while time.monotonic() - started < 3.0 or sum(map(len, seen.values())) < 12:
        assert time.monotonic() - started < 60, f"too slow: {sum(map(len, seen.values()))} memories"
        for user in users:  # acknowledged = visible through A's API (A is the one killed)
            seen[user] |= set(await asyncio.to_thread(listed, a.url, user))
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    await asyncio.sleep(1.0)  # B keeps writing for a moment after the kill
    stop.set()
    await asyncio.gather(*drivers)

    for user in users:
        on_b = await asyncio.to_thread(listed, b.url, user)
        assert seen[user] <= set(on_b), f"{user}: lost {len(seen[user] - set(on_b))} acknowledged memories"
        hits = await asyncio.to_thread(recalled, b.url, user, "the number matters", 50)
        assert hits and set(hits) <= set(on_b)
    # A fresh instance's view: every user's index built from the database matches its rows.
    with MemoryStore(None, embedder=embedder, records=PostgresRecordStore(dsn)) as store:
        for user in users:
            assert store.check_consistency(user)["ok"]
            assert seen[user] <= {r.id for r in store.list(user, 1000, 0)}
    print(f"\nkill -9 of A: {sum(map(len, seen.values()))} memories acknowledged by A, all on B after the kill")
