"""Manual turns (server VAD off), the session's VAD settings, a switch to text, and admission on ``/v1/realtime``.

Driven by the stock ``openai`` Python SDK against a real Parley (real VAD, Whisper and TTS; fake LLM).
"""

from __future__ import annotations

import numpy as np
import pytest

from speech.audio import resample_pcm16
from tests.support.fakes.openai_server import Reply
from tests.support.in_process import eventually, running_server
from tests.support.realtime import TOKEN, append_audio, client, manual_turn, next_of, realtime_session, typed_turn
from tests.support.voice_client import silence

pytestmark = pytest.mark.slow

MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


async def append_all(conn, pcm24: np.ndarray) -> None:
    """Append audio as fast as it goes (no VAD is listening: timing does not matter)."""
    await append_audio(conn, pcm24, chunk=4800, interval_s=0)


async def test_manual_turn_commit_is_transcribed_and_answered_on_response_create(make_config, embedder,
                                                                                speech_engines, spoken, fake_llm):
    # Speech with a long pause inside: with server VAD this would end the turn; here only commit does.
    speech = np.concatenate([spoken("What is the capital", "en"), silence(2.0), spoken("of France?", "en")])
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await conn.session.update(session=MANUAL)
        updated = await next_of(conn, {"session.updated"})
        assert updated.session.audio.input.turn_detection is None
        seen: list = []
        await append_all(conn, resample_pcm16(speech, 16000, 24000))
        await conn.input_audio_buffer.commit()
        committed = await next_of(conn, {"input_audio_buffer.committed"}, seen=seen)
        heard = await next_of(conn, {"conversation.item.input_audio_transcription.completed"}, seen=seen)
        assert heard.item_id == committed.item_id
        assert "capital" in heard.transcript.lower() and "france" in heard.transcript.lower()
        assert not any(e.type.startswith("input_audio_buffer.speech_") for e in seen), "no VAD events"
        assert not any(e.type == "response.created" for e in seen), "VAD off: the client asks for the answer"
        await conn.response.create()
        done = await next_of(conn, {"response.done"}, seen=seen)
        assert done.response.status == "completed"
        assert done.response.output[0].content[0].transcript.strip() == f"You said: {heard.transcript}"


async def test_manual_clear_empties_the_buffer_and_commit_of_nothing_is_an_error(make_config, embedder,
                                                                                speech_engines, spoken, fake_llm):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await conn.session.update(session=MANUAL)
        await next_of(conn, {"session.updated"})
        await append_all(conn, resample_pcm16(spoken("Hello there", "en"), 16000, 24000))
        await conn.input_audio_buffer.clear()
        await next_of(conn, {"input_audio_buffer.cleared"})
        await conn.send({"type": "input_audio_buffer.commit", "event_id": "empty"})
        error = await next_of(conn, {"error"}, timeout=10)
        assert error.error.code == "input_audio_buffer_commit_empty" and error.error.event_id == "empty"
        # The session goes on: a manual turn after it is heard.
        await append_all(conn, resample_pcm16(spoken("Good morning", "en"), 16000, 24000))
        await conn.input_audio_buffer.commit()
        heard = await next_of(conn, {"conversation.item.input_audio_transcription.completed"})
        assert "morning" in heard.transcript.lower()


async def test_manual_commit_takes_every_sample_appended(make_config, embedder, fake_speech_engines, fake_llm):
    # The link resamples 24 kHz to 16 kHz as audio comes; the filter's delay must reach the turn at commit.
    asr = fake_speech_engines.asr
    speech = np.concatenate([silence(0.2), asr.speak("count every sample", seconds=0.5), silence(0.3)])
    pcm24 = resample_pcm16(speech, 16000, 24000)
    assert pcm24.size % 3 == 0
    async with running_server(make_config(), embedder, fake_speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await conn.session.update(session=MANUAL)
        await next_of(conn, {"session.updated"})
        heard = await manual_turn(conn, pcm24)
        assert heard.transcript == "count every sample"
        assert asr.decoded[-1].size == pcm24.size * 2 // 3, "every appended sample, resampled, is committed"
        heard = await manual_turn(conn, pcm24)  # and the next turn the same, from a fresh filter
        assert heard.transcript == "count every sample"
        assert asr.decoded[-1].size == pcm24.size * 2 // 3


async def test_manual_clear_leaves_nothing_for_the_next_turn(make_config, embedder, fake_speech_engines, fake_llm):
    asr = fake_speech_engines.asr
    cleared = resample_pcm16(asr.speak("cleared words", seconds=0.5), 16000, 24000)  # loud to its last sample
    kept = np.concatenate([silence(0.2, 24000), resample_pcm16(asr.speak("kept words", seconds=0.5), 16000, 24000)])
    async with running_server(make_config(), embedder, fake_speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await conn.session.update(session=MANUAL)
        await next_of(conn, {"session.updated"})
        await append_audio(conn, cleared, interval_s=0)
        await conn.input_audio_buffer.clear()
        await next_of(conn, {"input_audio_buffer.cleared"})
        heard = await manual_turn(conn, kept)
    assert heard.transcript == "kept words"
    [turn] = asr.decoded
    assert turn.size == kept.size * 2 // 3
    # The cleared tone is at 0.3 of full scale; what the filter makes of silence is a few LSB at most.
    assert np.abs(turn[:int(0.1 * 16000)]).max() < 0.001, "the leading silence holds none of the cleared tone"


async def test_switch_to_text_output_stops_synthesis(make_config, embedder, speech_engines, fake_llm):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await typed_turn(conn, "hello")
        await next_of(conn, {"response.done"})
        [session] = srv.server.sessions
        assert session.reply is not None and session.reply.tts is not None, "audio: the reply was synthesized"
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await next_of(conn, {"session.updated"})
        await typed_turn(conn, "and text now")
        seen: list = []
        done = await next_of(conn, {"response.done"}, seen=seen)
        assert done.response.output[0].content[0].text.strip() == "You said: and text now"
        assert session.reply is not None and session.reply.tts is None, "text only: no synthesis at all"
        assert not any(e.type.startswith("response.output_audio") for e in seen)


async def test_a_client_still_configuring_counts_against_max_sessions(make_config, embedder, speech_engines,
                                                                       fake_llm):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN, max_sessions=1,
                              start_timeout_s=30.0) as srv:
        async with client(srv).realtime.connect(model="parley") as first:
            await next_of(first, {"session.created"})  # and then nothing: still in the session.update phase
            assert srv.server.sessions == set()
            async with client(srv).realtime.connect(model="parley") as second:
                refused = await next_of(second, {"error"}, timeout=10)
                assert refused.error.code == "too_many_sessions"
            # The first one is unharmed: its turn is answered, and it now holds the place as a session.
            await typed_turn(first, "hello")
            done = await next_of(first, {"response.done"})
            assert done.response.status == "completed"
            assert len(srv.server.sessions) == 1
        assert await eventually(lambda: srv.server.admission.starting == 0 and not srv.server.sessions)
        async with client(srv).realtime.connect(model="parley") as third:
            created = await next_of(third, {"session.created", "error"})
            assert created.type == "session.created", "the place is free again"


async def test_turn_detection_silence_duration_is_the_sessions_end_of_turn_silence(make_config, embedder,
                                                                                  speech_engines, spoken, fake_llm):
    # No question mark and no trailing "and": the turn-end rule keeps the ordinary silence for it.
    words = spoken("Tell me about the weather in Paris", "en")
    speech = np.concatenate([silence(0.4), words, silence(2.6)])
    speech_end_ms = (0.4 * 16000 + words.size) / 16

    async def turn(conn) -> float:
        await append_audio(conn, resample_pcm16(speech, 16000, 24000))  # at real time: the VAD hears it as it comes
        stopped = await next_of(conn, {"input_audio_buffer.speech_stopped"}, timeout=30)
        await next_of(conn, {"response.done"}, timeout=60)
        return stopped.audio_end_ms  # ms of the session's input stream when the turn was ended

    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        first = await turn(conn) - speech_end_ms
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": {
            "type": "server_vad", "silence_duration_ms": 1800, "threshold": 0.6, "prefix_padding_ms": 200}}}})
        updated = await next_of(conn, {"session.updated"})
        assert updated.session.audio.input.turn_detection.silence_duration_ms == 1800
        second = await turn(conn) - speech.size / 16 - speech_end_ms  # the first turn's audio came before
    assert second >= 1750, f"the session's 1,800 ms silence ends its turn (ended {second:.0f} ms after speech)"
    assert first < second - 500, f"the server's default silence ended the first turn sooner ({first:.0f} ms)"


async def test_truncate_keeps_only_what_the_client_played_in_history(make_config, embedder, speech_engines, fake_llm):
    answer = "The first sentence is short. The second one goes on for quite a bit longer. The third one ends it."
    fake_llm.push(Reply(text=answer))
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv, \
            realtime_session(srv) as (conn, _):
        await typed_turn(conn, "say three things")
        done = await next_of(conn, {"response.done"}, timeout=60)
        item = done.response.output[0]
        assert item.content[0].transcript.strip() == answer
        # The client played only the first 1.5 s (e.g. its user stopped playback there).
        await conn.conversation.item.truncate(item_id=item.id, content_index=0, audio_end_ms=1500)
        truncated = await next_of(conn, {"conversation.item.truncated"}, timeout=10)
        assert truncated.item_id == item.id and truncated.audio_end_ms == 1500
        await conn.send({"type": "conversation.item.truncate", "item_id": "item_unknown", "content_index": 0,
                         "audio_end_ms": 10, "event_id": "bad-item"})
        error = await next_of(conn, {"error"}, timeout=10)
        assert error.error.code == "item_not_found" and error.error.event_id == "bad-item"
        await typed_turn(conn, "go on")
        await next_of(conn, {"response.done"}, timeout=60)
    history = [m for m in fake_llm.requests[-1]["messages"] if m["role"] == "assistant"]
    assert len(history) == 1
    kept = history[0]["content"]
    assert kept and answer.startswith(kept) and len(kept) < len("The first sentence is short. The second"), kept
