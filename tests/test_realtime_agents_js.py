"""The OpenAI Realtime endpoint, driven by the stock JavaScript ``@openai/agents`` RealtimeSession.

Node runs tests/js/realtime_agents.mjs (``@openai/agents`` pinned in tests/js/package-lock.json,
installed by ``make test``) with its stock ``OpenAIRealtimeWebSocket`` transport pointed at a real
Parley: a typed turn, a spoken turn and an interruption.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from speech.audio import resample_pcm16
from tests.support.fakes.openai_server import Reply
from tests.support.in_process import running_server
from tests.support.voice_client import silence

pytestmark = pytest.mark.slow

JS = Path(__file__).resolve().parent / "js"
TOKEN = "agents-js-token"


def echo_or_long(request: dict) -> Reply:
    """Echo the user, except for the story request, which gets a long, slow answer to interrupt."""
    last = next((m["content"] for m in reversed(request["messages"]) if m["role"] == "user"), "")
    if "long story" in str(last):
        return Reply(text=" ".join(["Once upon a time there was a very long story."] * 30), token_interval_s=0.05)
    return Reply(text=f"You said: {last}")


async def run_agents_script(script: str, srv, timeout_s: float, **env: str) -> dict:
    """Run ``tests/js/<script>`` with Node against ``srv``; its last stdout line, a JSON summary, parsed."""
    node = shutil.which("node")
    assert node is not None, "node is installed by `make test` (scripts/setup-system.sh nodejs)"
    assert (JS / "node_modules" / "@openai" / "agents").is_dir(), "`make test` runs npm ci in tests/js"
    proc = await asyncio.create_subprocess_exec(
        node, str(JS / script), cwd=JS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PARLEY_URL": f"ws://127.0.0.1:{srv.port}/v1/realtime?model=parley",
             "PARLEY_TOKEN": TOKEN, **env})
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_stock_agents_sdk_holds_a_typed_turn_a_spoken_turn_and_an_interruption(
        make_config, embedder, speech_engines, spoken, fake_llm, tmp_path):
    fake_llm.default = echo_or_long
    speech = np.concatenate([silence(0.4), spoken("What is the capital of France?", "en"), silence(1.6)])
    speech_file = tmp_path / "speech24k.pcm"
    speech_file.write_bytes(resample_pcm16(speech, 16000, 24000).astype("<i2").tobytes())
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv:
        result = await run_agents_script("realtime_agents.mjs", srv, 240, PARLEY_SPEECH=str(speech_file))
    assert result["errors"] == []
    assert result["typed"]["status"] == "completed"
    assert result["typed"]["transcript"].strip() == "You said: hello there"
    assert result["typed"]["audioBytes"] > 24000, "at least half a second of 24 kHz audio reached the SDK"
    assert "capital of france" in result["spoken"]["transcript"].lower()
    assert result["spoken"]["status"] == "completed"
    assert result["interruption"]["status"] == "cancelled"
    assert result["interruption"]["reason"] == "client_cancelled"
    assert result["interruption"]["ms"] < 1000
    assert result["history"].count("user") == 3


def lights(request: dict) -> Reply:
    """Call the client's tool when it is offered and not yet run; answer from its output once it has been."""
    messages = request["messages"]
    if messages[-1]["role"] == "tool":
        return Reply(text=f"Done: {messages[-1]['content']}")
    if any(t["function"]["name"] == "set_lights" for t in request.get("tools", [])):
        return Reply(tool_call=("set_lights", {"room": "kitchen", "on": True}))
    return Reply(text="The tool was not offered.")


async def test_stock_agents_sdk_runs_its_own_tool_and_gets_the_answer(make_config, embedder, speech_engines, fake_llm):
    fake_llm.default = lights
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv:
        result = await run_agents_script("realtime_agents_tools.mjs", srv, 120)
    assert result["errors"] == []
    assert result["calls"] == [{"room": "kitchen", "on": True}], "the SDK ran its tool with the model's arguments"
    assert result["firstOutput"] == ["function_call"]
    assert result["statuses"] == ["completed", "completed"]
    assert result["answer"].startswith("Done: ") and '"brightness":80' in result["answer"]
    tool_request = next(r for r in fake_llm.requests if r.get("tools"))
    assert tool_request["tools"][0]["function"]["description"].startswith("Switch the lights")
