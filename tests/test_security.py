"""Secrets and exposure (issue 7), against a real ``server.py`` process, and the hostile inputs of
issue 16's outside attack, against an in-process server.

API keys come only from the environment and never reach the logs (even at DEBUG), error
events, replies or ``/healthz``, on success and on failure paths; listening beyond
loopback without a token warns. Integers of more than 4,300 digits, lone UTF-16 surrogates,
frames over ``--max_message_bytes`` and user ids ending in a newline each get an error event,
and the session goes on. The in-process server runs on the engine fakes
(tests/support/engine_fakes.py): none of these inputs reaches a model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server import build_parser, exposure_warning, server_settings
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.serper_server import FakeSerper, SearchReply
from tests.support.in_process import running_server
from tests.support.paths import ROOT
from tests.support.server_process import ServerProcess
from tests.support.voice_client import VoiceClient

pytestmark = pytest.mark.slow

LLM_KEY = "sk-parley-test-llm-5f1d2c3b4a"
SERPER_KEY = "serper-parley-test-9e8d7c6b"
AUTH_TOKEN = "parley-test-token-0a1b2c3d"


async def test_api_keys_never_reach_logs_events_or_health(fake_llm: FakeOpenAI, fake_serper: FakeSerper,
                                                          tmp_path: Path) -> None:
    fake_serper.api_key = SERPER_KEY
    args = ["--lm_model_url", fake_llm.base_url, "--lm_model_name", "fake-model", "--memory_dir",
            str(tmp_path / "memory"), "--serper_url", fake_serper.url, "--lm_tool_routing", "off",
            "--extract_facts", "off", "--lm_max_retries", "0", "--tts", "espeak", "--log_level", "DEBUG"]
    env = {"LLM_API_KEY": LLM_KEY, "SERPER_API_KEY": SERPER_KEY, "PARLEY_AUTH_TOKEN": AUTH_TOKEN,
           "HF_HUB_OFFLINE": "1"}
    with ServerProcess(args, env=env) as server:
        client = await VoiceClient.open(server.url.replace("http://", "ws://") + "ws", "alice", token=AUTH_TOKEN)
        await client.say_text("search the web for the latest news about the Mars rover")  # success, with search
        await client.wait_for("response.done", 1, timeout=60)
        fake_llm.push(Reply(status=500))  # the LLM fails: an apology, and whatever the error path logs
        fake_serper.push(SearchReply(status=500))
        await client.say_text("search the web for today's weather in Paris")
        await client.wait_for("response.done", 2, timeout=60)
        fake_serper.api_key = "rotated"  # Serper now refuses our key (401)
        await client.say_text("search the web for the newest phones")
        await client.wait_for("response.done", 3, timeout=60)
        await client.close()
        request = urllib.request.Request(server.url + "api/memory?user_id=alice",
                                         headers={"Authorization": f"Bearer {AUTH_TOKEN}"})
        memories = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=10).read().decode())
        def authorized(path: str) -> bytes:  # the detailed /healthz and /metrics need the token
            req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {AUTH_TOKEN}"})
            return urllib.request.urlopen(req, timeout=10).read()

        health = await asyncio.to_thread(authorized, "healthz")
        health += await asyncio.to_thread(authorized, "metrics")
        log = "\n".join(server.lines)
    assert fake_llm.auth_headers and set(fake_llm.auth_headers) == {f"Bearer {LLM_KEY}"}, "the key was used"
    assert len(fake_serper.queries) >= 2, "the search route ran"
    assert "DEBUG" in log, "the log was verbose enough to leak something"
    events = json.dumps(client.events())
    for secret in (LLM_KEY, SERPER_KEY, AUTH_TOKEN):
        for where, text in (("log", log), ("events", events), ("healthz", health.decode()), ("memory", memories)):
            assert secret not in text, f"{secret[:8]}... appears in the {where}"


def test_listening_beyond_loopback_without_a_token_warns(fake_llm: FakeOpenAI, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_AUTH_TOKEN", raising=False)
    cmd = [sys.executable, str(ROOT / "server.py"), "--host", "0.0.0.0", "--port", "0", "--lm_model_url",
           fake_llm.base_url, "--memory_dir", str(tmp_path / "memory"), "--tts", "espeak"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "LLM_API_KEY": "k", "HF_HUB_OFFLINE": "1"},  # no token
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the warning comes first, before any model loads
            lines.append(line)
            if "without --auth_token" in line or line.startswith("PARLEY_READY"):
                break
        assert "without --auth_token" in lines[-1], "".join(lines)
    finally:
        proc.kill()
        proc.wait(10)
    # The same decision, for the cases that must not warn (no process needed to see silence).
    args = build_parser().parse_args(["--host", "0.0.0.0", "--auth_token", AUTH_TOKEN])
    assert exposure_warning(server_settings(args)) is None
    assert exposure_warning(server_settings(build_parser().parse_args([]))) is None  # 127.0.0.1 by default
    exposed = exposure_warning(server_settings(build_parser().parse_args(["--host", "0.0.0.0"])))
    assert exposed and "0.0.0.0" in exposed


# --- hostile inputs found by the outside attack (issue 16) -----------------------------------

async def first_frame_answer(url: str, frame: str) -> tuple[dict | None, int | None]:
    """Send ``frame`` as the first message; return the server's event (if any) and the close code."""
    async with connect(url, max_size=None) as ws:
        await ws.send(frame)
        reply = None
        with contextlib.suppress(ConnectionClosed):
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply.get("type") == "session.ready":
                return reply, None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 10)
        return reply, ws.close_code


async def test_hostile_frames_get_error_events_and_the_session_goes_on_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    start = {"type": "session.start", "user_id": "mallory", "token": AUTH_TOKEN, "audio_output": False}
    async with running_server(make_config(), embedder, fake_speech_engines, auth_token=AUTH_TOKEN) as srv:
        url = srv.ws_url
        # As the first message: each is refused with its error and close 4400/4401, never 1011 or a dropped line.
        huge = json.dumps(start)[:-1] + ', "n": ' + "9" * 5000 + "}"
        assert await first_frame_answer(url, huge) == ({"type": "error", "code": "bad_json",
                                                        "message": "message is not valid JSON"}, 4400)
        reply, code = await first_frame_answer(url, json.dumps({**start, "pad": "x" * (3 << 20)}))  # 3 MiB
        assert reply and reply["code"] == "message_too_large" and code == 4400
        reply, code = await first_frame_answer(url, json.dumps({**start, "token": "\ud800"}))
        assert reply and reply["code"] == "bad_text" and code == 4400
        reply, code = await first_frame_answer(url, json.dumps({**start, "token": AUTH_TOKEN[:-1] + "\udfff"}))
        assert reply and reply["code"] == "bad_text" and code == 4400
        for user_id in ("alice\n", "..\n", "a" * 64 + "\n"):
            reply, code = await first_frame_answer(url, json.dumps({**start, "user_id": user_id}))
            assert reply and reply["code"] == "invalid_user_id" and code == 4400, user_id
        # Inside a session: an error event for each, and the session answers the next turn.
        client = await VoiceClient.open(url, "mallory", audio_output=False, token=AUTH_TOKEN)
        hostile = ['{"type": "text", "text": "hi", "n": ' + "9" * 5000 + "}",
                   json.dumps({"type": "text", "text": "my pin is \ud800 4321"}),
                   json.dumps({"type": "text", "text": "y" * (3 << 19)}),  # 1.5 MiB
                   json.dumps({"type": "interrupt", "pad": "z" * (3 << 19)})]
        for frame in hostile:
            await client.ws.send(frame)
        await client.wait_for("error", len(hostile), timeout=10)
        assert [e["code"] for e in client.events("error")] == ["bad_json", "bad_text", "message_too_large",
                                                               "message_too_large"]
        assert not any("4321" in str(r["messages"]) for r in fake_llm.requests), "refused before the agent"
        await client.say_text("are you still there")
        done = await client.wait_for("response.done", timeout=30)
        assert done["text"] == "You said: are you still there"
        await client.close()
        await srv.agent.writer.flush()
        assert any("are you still there" in r.text for r in srv.agent.memory.list("mallory")), "the turn was saved"
        assert srv.server.health()["sessions"] == 0


async def test_a_lone_surrogate_from_the_model_is_replaced_not_a_dropped_connection_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    # The same defect the other way round: a model (or a page it quotes) may stream "\ud800" in JSON.
    fake_llm.push(Reply(text="Half a pair \ud800 here, and the rest of the answer."))
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "surrogate-reply", audio_output=False)
        await client.say_text("say something odd")
        done = await client.wait_for("response.done", timeout=30)
        assert done["text"] == "Half a pair \ufffd here, and the rest of the answer."
        deltas = "".join(e["delta"] for e in client.events("response.text.delta"))
        assert deltas.strip() == done["text"]
        await client.say_text("and now")
        assert (await client.wait_for("response.done", 2, timeout=30))["text"] == "You said: and now"
        await client.close()
        await srv.agent.writer.flush()
        saved = [r.text for r in srv.agent.memory.list("surrogate-reply")]
        assert any("rest of the answer" in t for t in saved) and not any("\ud800" in t for t in saved)
        listed = await asyncio.to_thread(lambda: urllib.request.urlopen(
            f"{srv.http_url}/api/memory?user_id=surrogate-reply", timeout=10).read().decode())
        assert "rest of the answer" in listed
