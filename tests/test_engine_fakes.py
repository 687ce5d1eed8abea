"""The engine fakes themselves (tests/support/engine_fakes.py): what the tests on fake engines rely on.

If a fake drifted (an ASR that hears nothing, a TTS that yields no audio, a VAD that is not
Parley's stream), the tests built on it would test less than their names say; these catch that.
"""

from __future__ import annotations

import numpy as np

from speech.audio import pcm16_to_float
from speech.engines.base import ASR, TTS, VAD
from speech.engines.factory import EngineSettings, SpeechEngines
from speech.engines.vad import SpeechEnd, SpeechPause, SpeechStart, VADStream
from tests.support.engine_fakes import FakeASR, FakeTTS, FakeVAD, fake_engines
from tests.support.voice_client import silence


def test_the_fakes_subclass_the_real_interfaces() -> None:
    assert ASR in FakeASR.__mro__ and TTS in FakeTTS.__mro__ and VAD in FakeVAD.__mro__
    engines = fake_engines(EngineSettings(min_silence_ms=900, language="en"))
    assert isinstance(engines, SpeechEngines)
    assert engines.vad.args.min_silence_ms == 900 and engines.language_hint == "en"
    assert engines.output_sample_rate == engines.tts.sample_rate


def test_fake_asr_hears_what_was_said_and_only_that() -> None:
    asr = FakeASR()
    first, second = asr.speak("I went to the market and"), asr.speak("bought some pears.")
    audio = np.concatenate([silence(0.3), first, silence(1.0), second, silence(0.5)])
    assert asr.transcribe(pcm16_to_float(audio)).text == "I went to the market and bought some pears."
    # Half the utterance (a decode at the pause) hears the first half only.
    half = audio[: silence(0.3).size + first.size + 4000]
    assert asr.transcribe(pcm16_to_float(half)).text == "I went to the market and"
    noise = np.random.default_rng(1).normal(0, 4000, 16000).astype(np.int16)
    assert asr.transcribe(pcm16_to_float(noise)).text == ""
    assert asr.transcribe(pcm16_to_float(silence(1.0))).text == ""
    zh = asr.speak("今天天气很好")
    heard = asr.transcribe(pcm16_to_float(zh))
    assert heard.text == "今天天气很好" and heard.language == "zh"
    assert asr.calls == 5


def test_fake_vad_is_parleys_stream_and_finds_the_turn() -> None:
    vad = FakeVAD()
    stream = vad.new_stream()
    assert type(stream) is VADStream and vad.open_streams == 1
    speech = FakeASR().speak("What is the capital of France?")
    events = stream.process(np.concatenate([silence(0.5), speech, silence(1.2)]))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStart, SpeechPause, SpeechEnd], kinds
    end = events[-1]
    assert isinstance(end, SpeechEnd)
    assert abs(end.speech_end_ms - (0.5 + speech.size / 16000) * 1000) < 100
    stream.close()
    stream.close()
    assert vad.open_streams == 0


def test_fake_tts_audio_lasts_as_long_as_the_text() -> None:
    tts = FakeTTS()
    short = np.concatenate(list(tts.synthesize("Hello.", "en")))
    long = np.concatenate(list(tts.synthesize("Hello there, this is a much longer sentence to say.", "en")))
    assert short.dtype == np.int16 and np.abs(short).max() > 1000
    assert long.size > 5 * short.size
    assert 2.5 < long.size / tts.sample_rate < 4.0  # about 60 ms a character
    assert len(list(tts.synthesize("one two three", "en"))) == 3, "streams a chunk per word"
    assert tts.texts[:2] == ["Hello.", "Hello there, this is a much longer sentence to say."]
