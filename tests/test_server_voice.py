"""Spoken turns over the WebSocket: speech made by the embedded TTS, real VAD, Whisper and TTS.

The fake LLM is the only stand-in. Audio is streamed in 20 ms frames at real time. The tests
whose names end in ``_with_fake_engines`` are about the session, not a model (an interrupt
message, half duplex, the filler while a search runs): they run on the engine fakes of
tests/support/engine_fakes.py and load no model.
"""

from __future__ import annotations

import asyncio
import time

import jiwer
import numpy as np
import pytest

from agent.language import HAN
from tests.support.fakes.openai_server import Reply, echo
from tests.support.in_process import running_server
from tests.support.voice_client import VoiceClient, silence

pytestmark = pytest.mark.slow


LONG_REPLY = ("Well, that is a long story. It started many years ago in a small village by the sea. "
              "Every morning the fishermen went out before dawn, and every evening they came back with stories. "
              "Some of those stories were true, and some were not, but all of them were told with great care.")


def long_story(request: dict) -> Reply:
    """Tell a long story when asked for one (however many times: speculation may ask early); else echo."""
    last = request["messages"][-1]["content"].lower()
    return Reply(text=LONG_REPLY, token_interval_s=0.02) if "story" in last else echo(request)


def with_silence(speech: np.ndarray, before: float = 0.4, after: float = 1.6) -> np.ndarray:
    return np.concatenate([silence(before), speech, silence(after)])


async def test_english_round_trip(make_config, embedder, speech_engines, spoken, fake_llm):
    text = "What is the capital of France?"
    async with running_server(make_config(), embedder, speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "speaker-en")
        await client.stream_pcm(with_silence(spoken(text, "en")))
        done = await client.wait_for("response.done", timeout=60)
        heard = (await client.wait_for("transcript.final"))["text"]
        assert jiwer.wer(jiwer.RemovePunctuation()(text.lower()), jiwer.RemovePunctuation()(heard.lower())) <= 0.25
        kinds = [e["type"] for e in client.events()]
        for kind in ("vad.start", "vad.end", "transcript.final", "route", "response.text.delta",
                     "response.audio.start", "response.audio.end", "response.done"):
            assert kind in kinds, kind
        assert kinds.index("vad.start") < kinds.index("vad.end") < kinds.index("transcript.final")
        assert client.audio_bytes() > 0
        assert done["text"].startswith("You said:") and done["interrupted"] is False
        for stage in ("vad_end", "asr", "route", "llm_ttft", "tts_first_audio", "e2e"):
            assert stage in done["metrics"], stage
        await client.close()


async def test_chinese_round_trip(make_config, embedder, speech_engines, spoken, fake_llm):
    text = "今天北京的天气怎么样"
    async with running_server(make_config(), embedder, speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "speaker-zh")
        await client.stream_pcm(with_silence(spoken(text, "zh")))
        await client.wait_for("response.done", timeout=60)
        heard = (await client.wait_for("transcript.final"))["text"]
        strip = jiwer.RemovePunctuation()
        assert jiwer.cer(text, strip(heard).replace(" ", "")) <= 0.3, heard
        assert (await client.wait_for("route"))["route"] == "web_search"
        assert client.audio_bytes() > 0
        await client.close()


async def test_pause_inside_an_utterance_gives_one_reply(make_config, embedder, speech_engines, spoken, fake_llm):
    first, second = "I would like to know", "the tallest mountain in Europe"
    speech = np.concatenate([spoken(first, "en"), silence(0.6), spoken(second, "en")])
    async with running_server(make_config(), embedder, speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "pauser")
        sent_end = await client.stream_pcm(with_silence(speech, after=2.5))
        done = await client.wait_for("response.done", timeout=60)
        await asyncio.sleep(0.5)
        assert len(client.events("response.done")) == 1, "no premature reply at the mid-sentence pause"
        assert len(client.events("transcript.final")) == 1
        heard = done["text"].lower()
        assert "mountain" in heard and "know" in heard, heard
        first_audio = client.first_time("response.audio.start")
        assert first_audio is not None and first_audio > sent_end - 2.5, "audio only after the whole utterance"
        await client.close()


async def test_barge_in_stops_the_reply_and_keeps_what_was_heard(make_config, embedder, speech_engines, spoken,
                                                                  fake_llm):
    fake_llm.default = long_story
    async with running_server(make_config(), embedder, speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "interrupter")
        await client.stream_pcm(with_silence(spoken("Tell me a long story please", "en")))
        await client.wait_for("response.audio.start", timeout=60)
        await asyncio.sleep(1.5)  # let some of the reply play
        interruption = with_silence(spoken("Stop, what time is it?", "en"), before=0.0)
        await client.stream_pcm(interruption)
        first_done = await client.wait_for("response.done", timeout=30)
        assert first_done["interrupted"] is True
        vad_starts = [r.at for r in client.received if r.event and r.event["type"] == "vad.start"]
        barge_at = vad_starts[1]
        first_turn = first_done["turn_id"]
        # Binary frames carry no turn id: reply audio of turn 1 is everything before its response.done.
        done_at = next(r.at for r in client.received if r.event and r.event.get("turn_id") == first_turn
                       and r.event["type"] == "response.done")
        last_audio = max(r.at for r in client.received if r.audio is not None and r.at <= done_at)
        assert last_audio - barge_at < 0.2, "reply audio must stop within 200 ms of the barge-in"
        heard = first_done["text"]
        assert heard and LONG_REPLY.startswith(heard[: len(heard) // 2]) and len(heard) < len(LONG_REPLY) * 0.8
        second_done = await client.wait_for("response.done", 2, timeout=60)
        assert second_done["interrupted"] is False
        history = next(r["messages"] for r in fake_llm.requests
                       if r["messages"][-1]["role"] == "user" and "time" in r["messages"][-1]["content"].lower())
        assert {"role": "assistant", "content": heard} in history, "history keeps only what was heard"
        assert not any(m["content"] == LONG_REPLY for m in history), "the whole reply must not be in the history"
        assert sum(m["role"] == "assistant" for m in history) == 1
        await srv.agent.writer.flush()
        memories = [r.text for r in srv.agent.memory.list("interrupter")]
        assert not any("told with great care" in t for t in memories), "memory keeps only what was heard"
        await client.close()


async def test_interrupt_message_stops_a_reply_with_fake_engines(make_config, embedder, fake_speech_engines, fake_llm):
    fake_llm.default = long_story
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "stopper")
        await client.say_text("tell me a long story")
        await client.wait_for("response.audio.start", timeout=60)
        await asyncio.sleep(0.5)
        sent = time.perf_counter()
        await client.send_json({"type": "interrupt"})
        done = await client.wait_for("response.done", timeout=10)
        assert done["interrupted"] is True
        late = [r for r in client.received if r.audio is not None and r.at > sent + 0.2]
        assert not late, "no reply audio 200 ms after the interrupt"
        await client.close()


async def test_an_interrupt_drops_an_utterance_still_waiting_for_its_turn_end_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    # "New topic" (interrupt) while the user's last words wait out their end silence (a new speaker's
    # full stop: 1,200 ms): they are dropped like a confirmed turn still being transcribed, not answered later.
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "new-topic")
        await client.stream_pcm(with_silence(fake_speech_engines.asr.speak("I went to the market."), after=0.6))
        assert client.events("vad.start") and not client.events("vad.end"), "still in the pause"
        await client.send_json({"type": "interrupt"})
        await client.stream_pcm(silence(2.0))  # longer than any end silence
        assert not client.events("vad.end") and not client.events("transcript.final")
        await client.say_text("hello")
        done = await client.wait_for("response.done", timeout=30)
        assert done["text"] == "You said: hello"
        assert len(client.events("response.done")) == 1
        assert [e["text"] for e in client.events("transcript.final")] == ["hello"], "the spoken words are not a turn"
        await client.close()


async def test_half_duplex_ignores_speech_while_speaking_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    fake_llm.default = long_story
    async with running_server(make_config(), embedder, fake_speech_engines, no_interruption=True) as srv:
        client = await VoiceClient.open(srv.ws_url, "polite")
        await client.say_text("tell me a long story")
        await client.wait_for("response.audio.start", timeout=60)
        await client.stream_pcm(with_silence(fake_speech_engines.asr.speak("Stop talking now"), before=0.0, after=0.5))
        done = await client.wait_for("response.done", timeout=120)
        assert done["interrupted"] is False
        assert not client.events("vad.start")
        await client.close()


async def test_two_speakers_at_once_stay_separate(make_config, embedder, speech_engines, spoken, fake_llm):
    async with running_server(make_config(), embedder, speech_engines) as srv:
        en = await VoiceClient.open(srv.ws_url, "speaker-one")
        zh = await VoiceClient.open(srv.ws_url, "speaker-two")
        await asyncio.gather(en.stream_pcm(with_silence(spoken("What is the capital of France?", "en"))),
                             zh.stream_pcm(with_silence(spoken("今天北京的天气怎么样", "zh"))))
        done_en, done_zh = await asyncio.gather(en.wait_for("response.done", timeout=90),
                                                zh.wait_for("response.done", timeout=90))
        # Each session hears only its own speaker: English words in one, Chinese in the other.
        assert "capital" in done_en["text"].lower() and not HAN.search(done_en["text"])
        assert HAN.search(done_zh["text"]) and "capital" not in done_zh["text"].lower()
        await srv.agent.writer.flush()
        assert all(not HAN.search(r.text) for r in srv.agent.memory.list("speaker-one"))
        assert all("capital" not in r.text.lower() for r in srv.agent.memory.list("speaker-two"))
        await en.close()
        await zh.close()


async def test_slow_search_is_bridged_by_a_spoken_filler_with_fake_engines(
        search_config, embedder, fake_speech_engines, fake_serper, fake_llm):
    from tests.support.fakes.serper_server import SearchReply, organic

    fake_serper.push(SearchReply(organic(("Mars news", "https://example.org/mars", "A rover found ice.")),
                                 delay_s=1.5))
    async with running_server(search_config, embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "impatient")
        await client.say_text("search the latest news about Mars")
        await client.wait_for("response.done", timeout=60)
        audio_start = client.first_time("response.audio.start")
        sources = client.first_time("sources")
        assert audio_start is not None and sources is not None
        assert audio_start < sources, "a filler is spoken while the search runs"
        await client.close()


async def test_a_pause_longer_than_the_turn_window_still_gives_one_answer(make_config, embedder, speech_engines,
                                                                          spoken, fake_llm):
    # 1.1 s is longer than the 800 ms end-of-turn silence: the first half ends a turn, but the user
    # goes on before hearing anything, so the half is merged into the next turn.
    speech = np.concatenate([spoken("My favourite fruit is", "en"), silence(1.1),
                             spoken("mango and I eat it every day", "en")])
    async with running_server(make_config(), embedder, speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "slow-talker")
        sent_end = await client.stream_pcm(with_silence(speech, after=3.0))
        deadline = time.perf_counter() + 90
        while not [d for d in client.events("response.done") if not d["interrupted"]]:
            assert time.perf_counter() < deadline, client.events()
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # a second answer would come within this
        answered = [d for d in client.events("response.done") if not d["interrupted"]]
        assert len(answered) == 1, client.events("response.done")
        heard = answered[0]["text"].lower()
        assert "fruit" in heard and "mango" in heard, heard
        first_audio = next(r.at for r in client.received if r.audio is not None)
        assert first_audio > sent_end - 3.0, "no reply audio before the whole utterance was said"
        await srv.agent.writer.flush()
        texts = [r.text for r in srv.agent.memory.list("slow-talker")]
        assert len(texts) == 1 and "mango" in texts[0].lower(), texts
        await client.close()
