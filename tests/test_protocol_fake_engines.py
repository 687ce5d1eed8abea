"""The voice server's protocol, HTTP API, access control and bad input, over real sockets, with fake engines.

The server is real and in-process; only the models behind it are fakes
(tests/support/engine_fakes.py: loudness VAD on the real VAD stream, scripted ASR, TTS
audio as long as the text), because none of these tests is about a model. The spoken
round trip with the real engines is in test_server_voice.py.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.in_process import eventually, running_server
from tests.support.voice_client import VoiceClient


def http(method: str, url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


async def ahttp(method: str, url: str, token: str | None = None) -> tuple[int, dict]:
    return await asyncio.to_thread(http, method, url, token)


async def test_text_turn_events_in_order(make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "tess", audio_output=False)
        assert client.ready["type"] == "session.ready" and client.ready["session_id"]
        await client.say_text("tell me a joke")
        done = await client.wait_for("response.done")
        kinds = [e["type"] for e in client.events()]
        assert kinds[0] == "transcript.final" and kinds[1] == "route"
        assert kinds.index("response.text.delta") < kinds.index("response.done")
        deltas = "".join(e["delta"] for e in client.events("response.text.delta"))
        assert deltas.strip() == done["text"] == "You said: tell me a joke"
        assert done["interrupted"] is False and "llm_ttft" in done["metrics"]
        assert client.audio_bytes() == 0, "audio_output false means no audio"
        await client.close()


async def test_typed_turn_with_audio_output_streams_pcm(make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "tess")
        await client.say_text("hello there")
        done = await client.wait_for("response.done", timeout=120)
        start = client.events("response.audio.start")
        assert start and start[0]["sample_rate"] == client.ready["output_sample_rate"]
        assert client.events("response.audio.end")
        assert client.audio_bytes() > 0.2 * 2 * start[0]["sample_rate"], "at least 0.2 s of reply audio"
        assert done["metrics"]["e2e"] > 0 and "tts_first_audio" in done["metrics"]
        await client.close()


async def test_sessions_stay_separate(make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        a = await VoiceClient.open(srv.ws_url, "user-a", audio_output=False)
        b = await VoiceClient.open(srv.ws_url, "user-b", audio_output=False)
        await asyncio.gather(a.say_text("my secret word is apple"), b.say_text("my secret word is banana"))
        da, db = await asyncio.gather(a.wait_for("response.done"), b.wait_for("response.done"))
        assert "apple" in da["text"] and "banana" in db["text"]
        assert all("banana" not in e.get("delta", "") for e in a.events("response.text.delta"))
        await srv.agent.writer.flush()
        assert all("banana" not in r.text for r in srv.agent.memory.list("user-a"))
        assert all("apple" not in r.text for r in srv.agent.memory.list("user-b"))
        await a.close()
        await b.close()


async def test_bad_input_gets_clear_errors_and_session_goes_on(make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines, max_message_bytes=64 * 1024) as srv:
        client = await VoiceClient.open(srv.ws_url, "bad-input", audio_output=False)
        await client.ws.send("{not json")
        await client.send_json({"type": "dance"})
        await client.send_json(["a", "list"])
        await client.send_json({"type": "text"})
        await client.send_json({"type": "text", "text": "   "})
        await client.send_json({"type": "text", "text": "x" * 5000})
        await client.ws.send(b"\x01\x02\x03")  # odd byte count
        await client.send_json({"type": "session.start", "user_id": "again"})
        codes = []
        for i in range(8):
            codes.append((await client.wait_for("error", i + 1))["code"])
        assert codes == ["bad_json", "unknown_type", "bad_message", "bad_message", "empty_input", "input_too_long",
                         "bad_audio", "already_started"]
        await client.say_text("still there?")
        done = await client.wait_for("response.done")
        assert done["text"] == "You said: still there?"
        await client.close()


async def test_huge_frames(make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines, max_message_bytes=64 * 1024) as srv:
        other = await VoiceClient.open(srv.ws_url, "bystander", audio_output=False)
        greedy = await VoiceClient.open(srv.ws_url, "greedy", audio_output=False)
        await greedy.ws.send(b"\0" * (128 * 1024))  # over the limit: refused with an error, session goes on
        assert (await greedy.wait_for("error"))["code"] == "message_too_large"
        await greedy.say_text("one more")
        assert (await greedy.wait_for("response.done"))["text"] == "You said: one more"
        await greedy.ws.send(b"\0" * (512 * 1024))  # far over: the socket is closed (1009), nothing else
        await asyncio.wait_for(greedy.ws.wait_closed(), 10)
        assert greedy.ws.close_code == 1009
        await other.say_text("are you fine")
        assert (await other.wait_for("response.done"))["text"] == "You said: are you fine"
        await other.close()


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (b"\0\0", "not_started"),
        ('{"type": "text", "text": "hi"}', "not_started"),
        ('{"type": "session.start", "user_id": "../../etc"}', "invalid_user_id"),
        ('{"type": "session.start", "user_id": "ok", "sample_rate": 12345}', "bad_sample_rate"),
        ("nonsense", "bad_json"),
    ],
)
async def test_bad_session_start(make_config, embedder, fake_speech_engines, first, code):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        async with connect(srv.ws_url) as ws:
            await ws.send(first)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply == {"type": "error", "code": code, "message": reply["message"]}
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        # and the server still serves others
        client = await VoiceClient.open(srv.ws_url, "after", audio_output=False)
        assert client.ready["type"] == "session.ready"
        await client.close()


async def test_other_sample_rates_are_resampled(make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "rates", sample_rate=48000, audio_output=False)
        await client.stream_pcm(np.zeros(48000 // 2, dtype=np.int16), sample_rate=48000, speed=10)
        await client.say_text("ping")
        assert (await client.wait_for("response.done"))["text"] == "You said: ping"
        assert not client.events("error")
        await client.close()


async def test_token_is_required_everywhere_when_set(make_config, embedder, fake_speech_engines):
    token = "s3cret-token"
    async with running_server(make_config(), embedder, fake_speech_engines, auth_token=token) as srv:
        async with connect(srv.ws_url) as ws:
            await ws.send(json.dumps({"type": "session.start", "user_id": "intruder"}))
            assert json.loads(await ws.recv())["code"] == "unauthorized"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        with pytest.raises(InvalidStatus):
            async with connect(srv.ws_url, additional_headers={"Authorization": "Bearer wrong"}):
                pass
        good = await VoiceClient.open(srv.ws_url, "member", audio_output=False, token=token)
        assert good.ready["type"] == "session.ready"
        await good.close()
        by_header = await VoiceClient.open(srv.ws_url, "member", audio_output=False,
                                           headers={"Authorization": f"Bearer {token}"})
        assert by_header.ready["type"] == "session.ready"
        await by_header.close()
        status, _ = await ahttp("GET", f"{srv.http_url}/api/memory?user_id=member")
        assert status == 401
        status, body = await ahttp("GET", f"{srv.http_url}/api/memory?user_id=member", token=token)
        assert status == 200 and body["items"] == []


async def test_too_many_sessions_are_refused_clearly(make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines, max_sessions=1) as srv:
        first = await VoiceClient.open(srv.ws_url, "one", audio_output=False)
        async with connect(srv.ws_url) as ws:
            await ws.send(json.dumps({"type": "session.start", "user_id": "two"}))
            assert json.loads(await ws.recv())["code"] == "too_many_sessions"
        await first.close()


async def test_memory_http_api_is_per_user(make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        store = srv.agent.memory
        a_id = store.add("alice", "Alice's dog is called Biscuit")
        store.add("bob", "Bob's cat is called Tom")
        status, body = await ahttp("GET", f"{srv.http_url}/api/memory?user_id=alice")
        assert status == 200 and [m["id"] for m in body["items"]] == [a_id]
        status, body = await ahttp("GET", f"{srv.http_url}/api/memory?user_id=bob&q=dog")
        assert status == 200 and all("Biscuit" not in m["text"] for m in body["items"])
        status, _ = await ahttp("DELETE", f"{srv.http_url}/api/memory/{a_id}?user_id=bob")
        assert status == 404, "bob cannot delete alice's memory"
        status, _ = await ahttp("GET", f"{srv.http_url}/api/memory?user_id=../x")
        assert status == 400
        status, _ = await ahttp("DELETE", f"{srv.http_url}/api/memory/not-an-id?user_id=alice")
        assert status == 400
        status, body = await ahttp("DELETE", f"{srv.http_url}/api/memory/{a_id}?user_id=alice")
        assert status == 200 and body == {"deleted": a_id}
        assert store.list("alice") == []


async def test_healthz_and_web_client_are_served(make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        status, body = await ahttp("GET", f"{srv.http_url}/healthz")
        assert status == 200 and body["status"] == "ok" and "web_search" in body["tools"]
        page = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{srv.http_url}/", timeout=10).read())
        assert b"<html" in page.lower()
        status, _ = await ahttp("GET", f"{srv.http_url}/../../etc/passwd")
        assert status == 404


async def test_idle_sessions_are_closed(make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines, idle_timeout_s=0.5) as srv:
        client = await VoiceClient.open(srv.ws_url, "sleepy", audio_output=False)
        await asyncio.wait_for(client.ws.wait_closed(), 10)
        assert client.ws.close_code == 4408
        assert client.events("error")[-1]["code"] == "idle_timeout"


async def test_turn_rate_is_limited(make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines, max_turns_per_minute=2) as srv:
        client = await VoiceClient.open(srv.ws_url, "chatty", audio_output=False)
        for i in range(3):
            await client.say_text(f"message {i}")
        error = await client.wait_for("error")
        assert error["code"] == "rate_limited"
        await client.close()


async def end_session(client: VoiceClient) -> None:
    await client.send_json({"type": "session.end"})
    await asyncio.wait_for(client.ws.wait_closed(), 10)
    await client.close()


async def test_free_memory_is_handed_back_when_the_server_goes_idle(make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines, trim_memory_every_s=60.0) as srv:
        first = await VoiceClient.open(srv.ws_url, "first", audio_output=False)
        second = await VoiceClient.open(srv.ws_url, "second", audio_output=False)
        await asyncio.sleep(1.1)  # trims are at least a second apart
        await end_session(first)
        await asyncio.sleep(0.5)
        assert srv.server.memory_trims == 0, "another session is still open and the interval has not passed"
        await end_session(second)
        await eventually(lambda: srv.server.memory_trims, 10)
        _, body = await ahttp("GET", f"{srv.http_url}/healthz")
        assert body["process"]["memory_trims"] == 1


async def test_trimming_can_be_turned_off(make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines, trim_memory_every_s=0.0) as srv:
        client = await VoiceClient.open(srv.ws_url, "only", audio_output=False)
        await asyncio.sleep(1.1)
        await end_session(client)
        await asyncio.sleep(1.0)
        _, body = await ahttp("GET", f"{srv.http_url}/healthz")
        assert body["process"]["memory_trims"] == 0
