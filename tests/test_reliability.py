"""Faults at the session level (issue 7): LLM failures over the WebSocket, client disconnects,
ASR/TTS engine failures, a ``kill -9`` of the server during memory writes, and a short soak.

The LLM is the fake OpenAI server. Engine failures are real: an espeak-ng voice that does not
exist, and Whisper asked for a language code it does not know. The LLM faults and the disconnect
are not about a model: they run on the engine fakes (tests/support/engine_fakes.py), and their
names end in ``_with_fake_engines``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from agent.graph.prompts import APOLOGY
from agent.language import has_han
from tests.support.fakes.openai_server import FakeOpenAI, Reply, echo
from tests.support.in_process import eventually, running_server
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.voice_client import VoiceClient, silence, type_until_stopped

pytestmark = pytest.mark.slow

SORRY = APOLOGY["en"]

LONG_REPLY = ("Well, that is a long story. It started many years ago in a small village by the sea. "
              "Every morning the fishermen went out before dawn, and every evening they came back with stories. "
              "Some of those stories were true, and some were not, but all of them were told with great care.")


def pool_and_other_threads() -> tuple[int, int]:
    """(threads of the default executor, every other thread)."""
    names = [t.name for t in threading.enumerate()]
    pool = sum(1 for n in names if n.startswith("asyncio_"))
    return pool, len(names) - pool


# --- 1. LLM faults over the WebSocket ------------------------------------------------------

FAULTS = {
    "timeout": Reply(text="late", hang_s=2.5),
    "http_429": Reply(status=429),
    "http_500": Reply(status=500),
    "malformed_sse": Reply(text="one two three four five", malformed=True),
    "cut_mid_reply": Reply(text="This answer will be cut off half way through, sadly.", cut_after=3),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_llm_fault_over_websocket_apologizes_and_session_goes_on_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm, fault):
    failing = {"on": False}
    fake_llm.default = lambda request: FAULTS[fault] if failing["on"] else echo(request)
    retries = 1
    config = make_config(lm_max_retries=retries, lm_timeout_s=1.0)
    async with running_server(config, embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, f"fault-{fault.replace('_', '-')}",
                                        audio_output=fault == "cut_mid_reply")
        for turn in range(2):  # the same fault twice in a row: the session survives both
            failing["on"] = True
            before = len(fake_llm.requests)
            await client.say_text(f"question {turn}")
            done = await client.wait_for("response.done", turn + 1, timeout=30)
            failing["on"] = False
            error = await client.wait_for("error", turn + 1, timeout=5)
            assert error["code"] == "llm_failed"
            assert SORRY in done["text"] and done["interrupted"] is False
            assert len(done["text"]) < 200, "a short apology (plus at most the partial reply)"
            tried = len(fake_llm.requests) - before
            assert 1 <= tried <= 1 + retries, f"{tried} requests for one turn: retries must be bounded"
        if fault == "cut_mid_reply":
            assert done["text"].startswith("This answer"), "the partial reply is kept, then the apology"
            assert client.events("response.audio.end"), "the apology is spoken"
        await client.say_text("are you back")
        done = await client.wait_for("response.done", 3, timeout=30)
        assert done["text"] == "You said: are you back"
        assert len(client.events("error")) == 2
        await client.close()


async def test_llm_connection_refused_then_recovers_with_fake_engines(make_config, embedder, fake_speech_engines):
    port = free_port()  # nothing listens here yet
    config = make_config(lm_model_url=f"http://127.0.0.1:{port}/v1", lm_max_retries=1, lm_timeout_s=2.0)
    async with running_server(config, embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "refused", audio_output=False)
        await client.say_text("anyone there")
        done = await client.wait_for("response.done", timeout=30)
        assert (await client.wait_for("error"))["code"] == "llm_failed"
        assert done["text"] == SORRY
        with FakeOpenAI(port=port) as late:  # the LLM comes back: the same session answers
            await client.say_text("now?")
            done = await client.wait_for("response.done", 2, timeout=30)
            assert done["text"] == "You said: now?"
            assert len(late.requests) == 1
        await client.close()


# --- 2. Client disconnect mid-reply --------------------------------------------------------

async def test_client_disconnect_mid_reply_cancels_everything_and_saves_memory_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    def story(request: dict) -> Reply:
        last = request["messages"][-1]["content"].lower()
        return Reply(text=LONG_REPLY, token_interval_s=0.05) if "story" in last else echo(request)

    fake_llm.default = story
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        loop_tasks = asyncio.all_tasks
        bystander = await VoiceClient.open(srv.ws_url, "bystander")
        await bystander.say_text("hello there")  # warms the memory writer and the thread pool
        await bystander.wait_for("response.done", timeout=60)
        await srv.agent.writer.flush()
        await asyncio.sleep(0.5)
        base_tasks = len(loop_tasks())
        base_pool, base_other = pool_and_other_threads()

        victim = await VoiceClient.open(srv.ws_url, "leaver")
        await victim.say_text("tell me a long story")
        assert await eventually(lambda: victim.audio_bytes() > 0, 60), "reply audio started"
        assert not victim.events("response.done")
        assert any(t.get_name().startswith("reply-") for t in loop_tasks())
        victim.ws.transport.abort()  # the client vanishes mid-reply (no close frame)
        victim._reader.cancel()

        assert await eventually(lambda: not srv.server.sessions or len(srv.server.sessions) == 1, 10)
        leaked = await eventually(lambda: len(loop_tasks()) <= base_tasks, 10)
        names = sorted(t.get_name() for t in loop_tasks())
        assert leaked, f"tasks left: {len(loop_tasks())} > {base_tasks}: {names}"
        assert not any(n.startswith("reply-") for n in names)
        assert await eventually(lambda: pool_and_other_threads()[1] <= base_other, 15), \
            f"threads: {threading.enumerate()}"
        pool, _ = pool_and_other_threads()
        assert pool <= max(base_pool, min(32, (os.cpu_count() or 1) + 4)), "the executor stays bounded"

        await srv.agent.writer.flush()
        saved = srv.agent.memory.list("leaver")
        assert len(saved) == 1 and saved[0].metadata["interrupted"] is True
        assert saved[0].text.startswith("tell me a long story")
        assert LONG_REPLY not in saved[0].text, "only the heard part is kept"

        await bystander.say_text("still serving")  # the server goes on for the others
        done = await bystander.wait_for("response.done", 2, timeout=60)
        assert done["text"] == "You said: still serving"
        await bystander.close()


# --- 3. ASR / TTS engine failures on one utterance -----------------------------------------

def chinese_or_echo(request: dict) -> Reply:
    last = request["messages"][-1]["content"]
    return Reply(text="你好，很高兴见到你。") if has_han(last) else echo(request)


async def test_tts_failure_on_one_reply_sends_error_and_session_goes_on(make_config, embedder, speech_engines,
                                                                        fake_llm):
    from speech.engines.tts_espeak import EspeakSettings, EspeakTTS
    from speech.engines.tts_multilingual import MultilingualTTS

    # A real engine, really failing: espeak-ng exits 1 for a voice that does not exist.
    broken_en = EspeakTTS(EspeakSettings(espeak_voice_en="nosuchvoice"))
    zh = speech_engines.tts.engines["zh"]
    tts = MultilingualTTS({"en": broken_en, "zh": zh}, speech_engines.output_sample_rate)
    engines = dataclasses.replace(speech_engines, tts=tts)
    fake_llm.default = chinese_or_echo
    async with running_server(make_config(), embedder, engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "tts-fail")
        await client.say_text("hello there")
        done = await client.wait_for("response.done", timeout=60)
        assert done["text"] == "You said: hello there", "the text of the reply still arrives"
        assert (await client.wait_for("error"))["code"] == "tts_failed"
        audio_before = client.audio_bytes()
        await client.say_text("你好")  # the next reply speaks fine
        done = await client.wait_for("response.done", 2, timeout=60)
        assert done["text"] == "你好，很高兴见到你。"
        assert await eventually(lambda: client.audio_bytes() > audio_before + 4000, 10)
        assert [e["code"] for e in client.events("error")] == ["tts_failed"]
        await client.close()


async def test_asr_failure_sends_error_and_session_goes_on(make_config, embedder, speech_engines, spoken,
                                                           fake_llm):
    # A real engine, really failing: Whisper raises ValueError for an unknown language code.
    engines = dataclasses.replace(speech_engines, args=dataclasses.replace(speech_engines.args, language="xx"))
    speech = np.concatenate([silence(0.4), spoken("What is the capital of France?", "en"), silence(1.6)])
    async with running_server(make_config(), embedder, engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "asr-fail", audio_output=False)
        await client.stream_pcm(speech, speed=2.0)
        assert (await client.wait_for("error", timeout=30))["code"] == "asr_failed"
        assert len(client.events("error")) == 1, "one error per utterance"
        assert not client.events("response.done")
        await client.say_text("can you read this")
        done = await client.wait_for("response.done", timeout=30)
        assert done["text"] == "You said: can you read this"
        await client.close()


# --- 4. kill -9 of the server during heavy memory writes ------------------------------------

CRASH_USERS = [f"crash-{i}" for i in range(6)]


def api_memory_ids(base_url: str, user_id: str) -> set[str]:
    with urllib.request.urlopen(f"{base_url}api/memory?user_id={user_id}&limit=500", timeout=10) as resp:
        return {item["id"] for item in json.loads(resp.read())["items"]}


def server_args(fake: FakeOpenAI, memory_dir: Path) -> list[str]:
    return ["--lm_model_url", fake.base_url, "--lm_model_name", "fake-model", "--memory_dir", str(memory_dir),
            "--lm_tool_routing", "off", "--extract_facts", "off", "--max_turns_per_minute", "100000",
            "--max_sessions", "32", "--tts", "espeak", "--log_level", "WARNING"]


async def test_kill_9_during_memory_writes_loses_nothing_acknowledged(tmp_path, embedder, fake_llm):
    from agent.memory import MemoryStore
    from agent.memory.vector_index import load_index
    from tests.support.server_process import ServerProcess

    memory_dir = tmp_path / "memory"
    env = {"LLM_API_KEY": "test-llm-key", "HF_HUB_OFFLINE": "1"}
    seen: dict[str, set[str]] = {u: set() for u in CRASH_USERS}
    done_turns: list[int] = []
    with ServerProcess(server_args(fake_llm, memory_dir), env=env) as server:
        ws_url = server.url.replace("http://", "ws://") + "ws"
        stop = asyncio.Event()
        drivers = [asyncio.create_task(type_until_stopped(ws_url, u, stop, done_turns)) for u in CRASH_USERS]
        started = time.monotonic()
        while time.monotonic() - started < 5.0 or sum(map(len, seen.values())) < 30:
            assert time.monotonic() - started < 60, f"too slow: {sum(map(len, seen.values()))} memories"
            for user in CRASH_USERS:  # acknowledged = visible through the API
                seen[user] |= await asyncio.to_thread(api_memory_ids, server.url, user)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)  # mid-writes: the sessions are still typing
        server.proc.wait(10)
        stop.set()
        await asyncio.gather(*drivers)
    acknowledged = sum(map(len, seen.values()))

    # The index files on disk as the crash left them (may lag SQLite: caught up on load).
    db = sqlite3.connect(memory_dir / "memory.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = dict(db.execute("SELECT user_id, COUNT(*) FROM memories GROUP BY user_id").fetchall())
    db.close()
    behind = 0
    for user in CRASH_USERS:
        loaded = load_index(memory_dir / "index" / f"{user}.faiss", embedder.dim)
        behind += rows.get(user, 0) - (loaded[0].ntotal if loaded else 0)

    with ServerProcess(server_args(fake_llm, memory_dir), env=env) as server:  # restart on the same folder
        for user in CRASH_USERS:
            after = await asyncio.to_thread(api_memory_ids, server.url, user)
            assert seen[user] <= after, f"{user}: lost {len(seen[user] - after)} acknowledged memories"
        first = CRASH_USERS[0]
        count = len(await asyncio.to_thread(api_memory_ids, server.url, first))
        client = await VoiceClient.open(server.url.replace("http://", "ws://") + "ws", first, audio_output=False)
        await client.say_text("after the crash")
        assert (await client.wait_for("response.done", timeout=30))["text"] == "You said: after the crash"
        await client.close()
        assert await eventually(lambda: len(api_memory_ids(server.url, first)) > count, 10), "new turns are saved"

    with MemoryStore(memory_dir, embedder=embedder) as store:
        for user in CRASH_USERS:
            report = store.check_consistency(user)
            assert report["ok"], f"{user}: index and SQLite differ: {report}"
            ids = {r.id for r in store.list(user, 1000, 0)}
            assert seen[user] <= ids
            assert store.search(user, "the number matters", 3), "search works after the crash"
    print(f"\nkill -9: {acknowledged} acknowledged memories verified after restart "
          f"({sum(rows.values())} rows in SQLite, index files {behind} rows behind at the crash, "
          f"{len(done_turns)} turns answered before the kill)")


# --- 6. Soak --------------------------------------------------------------------------------

async def soak(*flags: str) -> dict:
    """Run bench/soak.py as a person does (``python -m bench.soak --json FLAGS``) and return its result.

    The tests never import bench: the benchmark is a program, and its JSON (counts, growth, the
    bounds it broke) is what these tests check.
    """
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.soak", "--json", *flags, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_short_soak_leaves_nothing_behind():
    """bench/soak.py, short: visitors join, talk, type, interrupt and vanish; nothing may pile up."""
    result = await soak("--duration_s", "30", "--warmup_s", "15", "--clients", "3")
    counts = result["counts"]
    assert counts["failures"] == [], counts["failures"][:5]
    assert counts["error_events"] == 0
    assert result["server_exit"] is None, "the server died"
    assert counts["sessions"] >= 6 and sum(counts["actions"].values()) >= 9, counts
    assert result["final"]["sessions"] == 0 and result["final"]["pending_writes"] == 0
    assert result["final"]["tasks"] <= result["baseline"]["tasks"], "a finished session left a task behind"
    # Resident memory is reported here, not asserted: 30 s and a few dozen sessions cannot tell a
    # per-session leak from the first barge-in or Chinese sentence filling a pool. The churn test
    # below asserts it over many more sessions; bench/soak.py measures it over 10 minutes.
    broken = [b for b in result["broken_bounds"] if not b.startswith("rss_mb")]
    assert not broken, (broken, result["baseline"], result["final"])
    print(f"\nsoak: {counts['sessions']} sessions, {counts['actions']}, growth {result['growth']}")


async def test_sessions_coming_and_going_do_not_grow_memory():
    """Many short sessions (typed turns, connections dropped mid-reply): resident memory stays flat.

    Each session used to build and free its own native Silero model, which left about 3 MB
    behind every time: this run (well over 100 sessions) grew by several hundred MB then.
    """
    result = await soak("--duration_s", "40", "--warmup_s", "15", "--clients", "4", "--audio_share", "0",
                        "--actions", "text,text,leave", "--audio_output", "0")
    counts = result["counts"]
    assert counts["failures"] == [], counts["failures"][:5]
    assert result["server_exit"] is None, "the server died"
    assert counts["sessions"] >= 100, counts  # enough for a per-session leak of 1 MB to break the bound
    broken = result["broken_bounds"]
    assert not broken, (broken, result["baseline"], result["final"])
    assert result["final"]["malloc_arenas"] <= 2, result["final"]  # server.py caps them (speech/allocator.py)
    assert result["final"]["memory_trims"] >= 1, result["final"]  # closed sessions hand their memory back
    print(f"\nchurn: {counts['sessions']} sessions, {counts['actions']}, growth {result['growth']}")
