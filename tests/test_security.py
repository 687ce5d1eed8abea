"""Secrets and exposure (issue 7), against a real ``server.py`` process.

API keys come only from the environment and never reach the logs (even at DEBUG), error
events, replies or ``/healthz``, on success and on failure paths; listening beyond
loopback without a token warns.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from server import build_parser, exposure_warning, server_options
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.serper_server import FakeSerper, SearchReply
from tests.voice_client import VoiceClient
from tests.web_helpers import ROOT, ServerProcess

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
    assert exposure_warning(server_options(args)) is None
    assert exposure_warning(server_options(build_parser().parse_args([]))) is None  # 127.0.0.1 by default
    exposed = exposure_warning(server_options(build_parser().parse_args(["--host", "0.0.0.0"])))
    assert exposed and "0.0.0.0" in exposed
