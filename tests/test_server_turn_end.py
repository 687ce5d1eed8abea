"""Turn ends over the WebSocket: early for a finished sentence, late for a dangling one, never
audible to a speaker who only pauses; partial transcripts, at pauses and during speech without
pauses; the reply's audio pausing for a sound that is not speech.

The early answer is timed with the real engines (its bound includes a real decode). The others
are about Parley's turn-taking, not a model: they run on fake engines (tests/support/engine_fakes.py:
the real VAD stream scored by loudness, an ASR that hears scripted tone speech, TTS audio as long
as the text), so the words heard are exactly the words said."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from tests.support.fakes.openai_server import Reply, echo
from tests.support.in_process import running_server
from tests.support.speech import trim
from tests.support.voice_client import VoiceClient, silence

pytestmark = pytest.mark.slow

STORY = " ".join(["This answer goes on for a good while so that there is time to make some noise."] * 4)


def story_or_echo(request: dict) -> Reply:
    last = request["messages"][-1]["content"].lower()
    return Reply(text=STORY, token_interval_s=0.02) if "story" in last else echo(request)


async def test_a_finished_sentence_is_answered_early(make_config, embedder, speech_engines, spoken, fake_llm):
    speech = trim(spoken("What is the capital of France?", "en"))
    async with running_server(make_config(), embedder, speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "quick-asker")
        turn = await client.speak_turn(speech, after_s=2.0)
        done, last_word = turn.done, turn.last_word
        assert not done["interrupted"]
        first_audio = next(r.at for r in client.received if r.audio is not None)
        # The old fixed 800 ms end-of-turn silence alone was later than this.
        assert done["metrics"]["vad_end"] < 700, done["metrics"]
        assert 0 < first_audio - last_word < 1.4, first_audio - last_word
        await client.close()


async def test_a_pause_after_a_dangling_word_is_not_a_turn_end_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    # 1.2 s is longer than the default 800 ms end-of-turn silence, but the words so far end in "and".
    first = fake_speech_engines.asr.speak("I went to the market yesterday and")
    second = fake_speech_engines.asr.speak("I bought some apples and pears.")
    speech = np.concatenate([first, silence(1.2), second])
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "ponderer")
        turn = await client.speak_turn(speech, after_s=2.5)
        done, last_word = turn.done, turn.last_word
        await asyncio.sleep(1.0)
        assert len(client.events("response.done")) == 1, "the pause did not end a turn"
        assert len(client.events("transcript.final")) == 1
        assert not [r for r in client.received if r.audio is not None and r.at < last_word], "nothing audible early"
        assert not [e for e in client.events("vad.end")][1:], "one turn end only"
        heard = done["text"].lower()
        assert "market" in heard and "apples" in heard, heard
        # The decode at the pause was kept: a partial transcript of the first half came before the final one.
        partials = client.events("transcript.partial")
        assert partials and "market" in partials[0]["text"].lower(), partials
        await client.close()


async def test_a_sound_that_is_not_speech_pauses_the_reply_and_it_goes_on_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    fake_llm.default = story_or_echo
    blip = fake_speech_engines.asr.speak("Hm, yes.")[:1920]  # 120 ms of voice: a probable onset, not a turn
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "cougher")
        await client.say_text("tell me a story")
        await client.wait_for("response.audio.start", timeout=60)
        await asyncio.sleep(1.0)
        turn = await client.speak_turn(blip, before_s=0.0, after_s=1.0)
        done, sent = turn.done, turn.start
        assert done["interrupted"] is False, "a 120 ms sound does not stop the reply"
        assert done["text"] == STORY
        frames = [r.at for r in client.received if r.audio is not None and r.at > sent]
        gaps = np.diff(frames)
        paused = [frames[i] for i in np.flatnonzero(gaps > 0.1)]
        assert paused and paused[0] - sent < 0.2, "the audio paused at the probable onset"
        assert not client.events("vad.start")
        await client.close()


async def test_speech_without_pauses_is_transcribed_while_it_goes_on_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    # Three phrases with 150 ms gaps between them: never a pause (300 ms) the speculative decode
    # would start at, so only the continuous-speech partials commit anything before the end.
    asr = fake_speech_engines.asr
    phrases = ["I took the early train to the city", "and walked along the river for hours",
               "before lunch."]
    speech = np.concatenate([asr.speak(phrases[0], 2.0), silence(0.15), asr.speak(phrases[1], 2.0), silence(0.15),
                             asr.speak(phrases[2], 1.5)])
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "talker")
        done = (await client.speak_turn(speech, after_s=2.0)).done
        order = [r.event["type"] for r in client.received if r.event]
        partials = [e["text"] for e in client.events("transcript.partial")]
        assert partials[:2] == [phrases[0], f"{phrases[0]} {phrases[1]}"], partials
        assert order.index("transcript.partial") < order.index("vad.end"), "shown while the user spoke"
        assert client.events("transcript.final")[0]["text"] == " ".join(phrases)
        assert not done["interrupted"]
        await client.close()


async def test_a_speaker_who_paused_long_is_not_answered_at_a_like_pause_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    # Every fragment ends in a full stop (as Whisper writes one at most pauses inside a sentence).
    # The first turn shows a 0.75 s pause gone on from; in the second a 0.95 s pause, longer than the
    # default 800 ms end silence, must not end the turn (it waits 0.75 s + the 400 ms margin).
    asr = fake_speech_engines.asr
    first = np.concatenate([asr.speak("I went to the market."), silence(0.75), asr.speak("It was busy.")])
    second = np.concatenate([asr.speak("Then I went home."), silence(0.95), asr.speak("I cooked dinner.")])
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "slow-speaker")
        await client.speak_turn(first, after_s=2.5)
        n_audio = len([r for r in client.received if r.audio is not None])
        turn = await client.speak_turn(second, after_s=2.5)  # the second response.done
        done, last_word = turn.done, turn.last_word
        await asyncio.sleep(1.0)
        audio = [r for r in client.received if r.audio is not None][n_audio:]
        assert audio and audio[0].at > last_word, "nothing audible before the last word"
        assert len(client.events("response.done")) == 2
        assert done["text"] and "dinner" in client.events("transcript.final")[-1]["text"]
        await client.close()


async def test_a_held_reply_is_synthesized_before_its_turn_is_confirmed_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm, caplog):
    # "...know." is a doubtful full stop: the turn ends after 1,300 ms of silence, long after the
    # speculative reply (at the 300 ms pause) has its whole one-sentence answer from the fake LLM.
    # That answer's only piece used to wait for the agent's turn to end, which waits for the commit:
    # its synthesis started only once the turn was confirmed, adding it to the end-of-turn silence.
    caplog.set_level(logging.DEBUG, logger="speech.voice.trace")
    speech = fake_speech_engines.asr.speak("I would like to know.")
    async with running_server(make_config(), embedder, fake_speech_engines) as srv:
        client = await VoiceClient.open(srv.ws_url, "waiter")
        turn = await client.speak_turn(speech, after_s=2.0)
        done, last_word = turn.done, turn.last_word
        assert done["text"] == "You said: I would like to know." and not done["interrupted"]
        marks = [r.trace for r in caplog.records if hasattr(r, "trace") and r.trace.get("turn") == done["turn_id"]]
        at = {m["name"]: m["at"] for m in marks}
        assert {"reply_start", "tts_first_audio", "confirm", "first_byte"} <= set(at), marks
        assert at["tts_first_audio"] < at["confirm"], "the held reply's audio was ready when the turn ended"
        assert at["confirm"] <= at["first_byte"], "and none of it went out before"
        vad_end = client.first_time("vad.end")
        first_audio = next(r.at for r in client.received if r.audio is not None)
        assert vad_end is not None and last_word < vad_end <= first_audio, "nothing audible before the turn ended"
        await client.close()
