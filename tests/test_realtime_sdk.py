"""The OpenAI Realtime endpoint, driven by the official ``openai`` Python SDK unchanged.

``AsyncOpenAI(base_url="http://127.0.0.1:PORT/v1", api_key=TOKEN).realtime.connect(model=...)`` is
exactly what an SDK user writes; the server is a real Parley with real engines and the fake LLM.
"""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from speech.audio import resample_pcm16
from tests.support.fakes.openai_server import Reply
from tests.support.in_process import running_server
from tests.support.realtime import TOKEN, append_audio, next_of, realtime_session, typed_turn
from tests.support.voice_client import silence

pytestmark = pytest.mark.slow


async def test_sdk_typed_turn_is_answered_with_audio_and_transcript(make_config, embedder, speech_engines, fake_llm):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv:
        async with realtime_session(srv, user_id="rt-typed") as (conn, created):
            assert created.session.audio.output.format.rate == 24000
            await conn.session.update(session={"type": "realtime", "instructions": "be brief"})
            await next_of(conn, {"session.updated"})
            await typed_turn(conn, "hello there")
            seen: list = []
            done = await next_of(conn, {"response.done"}, seen=seen)
        kinds = [e.type for e in seen]
        assert kinds.index("response.created") < kinds.index("response.output_audio.delta") \
            < kinds.index("response.done")
        assert "parley.route" in kinds, "Parley's extras come as parley.* events"
        transcript = "".join(e.delta for e in seen if e.type == "response.output_audio_transcript.delta")
        assert transcript.strip() == "You said: hello there"
        audio = b"".join(base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta")
        assert len(audio) / 2 / 24000 > 0.5, "at least half a second of 24 kHz speech"
        assert done.response.status == "completed"
        assert done.response.output[0].content[0].transcript.strip() == "You said: hello there"


async def test_sdk_spoken_turn_is_transcribed_and_answered(make_config, embedder, speech_engines, spoken, fake_llm):
    speech = np.concatenate([silence(0.4), spoken("What is the capital of France?", "en"), silence(1.6)])
    pcm24 = resample_pcm16(speech, 16000, 24000)
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv:
        async with realtime_session(srv) as (conn, _):
            await append_audio(conn, pcm24)  # 20 ms at 24 kHz, streamed at real time
            seen: list = []
            done = await next_of(conn, {"response.done"}, timeout=90, seen=seen)
        kinds = [e.type for e in seen]
        assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped") \
            < kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
        heard = next(e for e in seen if e.type == "conversation.item.input_audio_transcription.completed")
        assert "capital of france" in heard.transcript.lower()
        assert done.response.status == "completed"
        assert any(e.type == "response.output_audio.delta" for e in seen)


async def test_sdk_cancel_mid_answer_is_cancelled_within_a_second(make_config, embedder, speech_engines, fake_llm):
    fake_llm.push(Reply(text=" ".join(["This is a long answer that goes on."] * 30), token_interval_s=0.05))
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await typed_turn(conn, "tell me a story")
        await next_of(conn, {"response.output_audio.delta"}, timeout=60)
        asked = time.monotonic()
        await conn.response.cancel()
        done = await next_of(conn, {"response.done"}, timeout=5)
        assert time.monotonic() - asked < 1.0
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "client_cancelled"
        # The session goes on: a second turn is answered.
        await typed_turn(conn, "thanks")
        again = await next_of(conn, {"response.done"}, timeout=60)
        assert again.response.status == "completed"


async def test_sdk_wrong_key_is_refused(make_config, embedder, speech_engines):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv:
        wrong = AsyncOpenAI(base_url=f"{srv.http_url}/v1", api_key="not-the-token")
        with pytest.raises(Exception) as refused:  # the SDK raises the handshake's HTTP 401
            async with wrong.realtime.connect(model="parley") as conn:
                await conn.recv()
        assert "401" in str(refused.value) or isinstance(refused.value, openai.AuthenticationError)
        assert srv.server.sessions == set()


async def test_bad_events_get_an_error_each_and_the_session_goes_on(make_config, embedder, speech_engines, fake_llm):
    fake_llm.push(Reply(text="A slow answer. " * 20, token_interval_s=0.05))
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        bad = [
            {"type": "no.such.event", "event_id": "e1"},
            {"type": "input_audio_buffer.append", "audio": "%%% not base64 %%%", "event_id": "e2"},
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode(),
             "event_id": "e3"},
            {"type": "session.update", "event_id": "e4",
             "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}},
            {"type": "input_audio_buffer.append", "event_id": "e5"},
            {"type": "response.cancel", "event_id": "e6"},
        ]
        for event in bad:
            await conn.send(event)
            error = await next_of(conn, {"error"}, timeout=10)
            assert error.error.event_id == event["event_id"], (event, error)
            assert error.error.code and error.error.message
        await typed_turn(conn, "tell me")
        await next_of(conn, {"response.created"}, timeout=30)
        await conn.response.create()  # out of order: one is active
        error = await next_of(conn, {"error"}, timeout=10)
        assert error.error.code == "conversation_already_has_active_response"
        done = await next_of(conn, {"response.done"}, timeout=60)
        assert done.response.status == "completed"


async def test_sdk_speech_during_an_answer_cancels_it_as_turn_detected(make_config, embedder, speech_engines, spoken,
                                                                       fake_llm):
    fake_llm.push(Reply(text=" ".join(["This is a long answer that goes on."] * 30), token_interval_s=0.05))
    speech = resample_pcm16(np.concatenate([spoken("Stop, what time is it?", "en"), silence(1.6)]), 16000, 24000)
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv:
        async with realtime_session(srv) as (conn, _):
            await typed_turn(conn, "tell me a story")
            await next_of(conn, {"response.output_audio.delta"}, timeout=60)
            seen: list = []
            talking = asyncio.ensure_future(append_audio(conn, speech))
            done = await next_of(conn, {"response.done"}, timeout=30, seen=seen)
            await talking
        kinds = [e.type for e in seen]
        assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")
        assert done.response.status == "cancelled" and done.response.status_details.reason == "turn_detected"
        heard = done.response.output[0].content[0].transcript
        assert heard and len(heard) < len("This is a long answer that goes on.") * 30, "only the heard part is kept"
