"""Whisper base round trips on real TTS speech, incremental vs one-shot, loop guards, model joining."""

from __future__ import annotations

import re

import jiwer
import numpy as np
import pytest

from agent.language import HAN
from speech.engines.asr_guards import is_degenerate, join_segments, strip_repeats
from speech.engines.asr_incremental import IncrementalTranscriber
from speech.engines.base import ASR, Transcript
from speech.engines.whisper_model import whisper_base_dir
from tests.support.speech import speech16k, whisper

EN = "I would like to book a table for two people tomorrow evening at seven."
ZH = "今天天气很好，我们一起去公园散步吧。"
EN_LONG = ("Yesterday I went to the market to buy some vegetables. The prices were higher than last week, "
           "so I only bought carrots and potatoes. On the way home it started to rain.")

# Bounds: Whisper base on clean TTS speech. English is near perfect; the Mandarin voice
# (FastSpeech2 at 24 kHz) plus Whisper base gets most characters right.
MAX_WER_EN = 0.15
MAX_CER_ZH = 0.30


def norm_en(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower().replace("7", "seven")).strip()


def norm_zh(text: str) -> str:
    return "".join(HAN.findall(text))


def test_loop_guards() -> None:
    assert is_degenerate("the the the the the the the the the the the the")
    assert is_degenerate("谢谢观看")
    assert is_degenerate("哈哈" * 20)
    assert not is_degenerate("Hello there, how are you doing today?")
    assert strip_repeats("I am fine. no no no no no") == "I am fine. no"
    assert strip_repeats("我们走吧我们走吧我们走吧我们走吧") == "我们走吧"
    assert join_segments(["你好。", "今天"]) == "你好。今天"
    assert join_segments(["Hello.", "World"]) == "Hello. World"


@pytest.mark.slow
def test_model_is_joined_once_atomically(tmp_path) -> None:
    folder = whisper_base_dir(tmp_path / "wb")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert whisper_base_dir(tmp_path / "wb") == folder and (folder / "model.bin").stat().st_mtime_ns == mtime
    with (folder / "model.bin").open("r+b") as f:  # a truncated file is rebuilt
        f.truncate(1000)
    whisper_base_dir(tmp_path / "wb")
    assert (folder / "model.bin").stat().st_size > 100_000_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_english_round_trip_with_auto_language() -> None:
    result = whisper().transcribe(speech16k(EN), None)
    assert result.language == "en"
    assert jiwer.wer(norm_en(EN), norm_en(result.text)) <= MAX_WER_EN, result.text


@pytest.mark.slow
def test_chinese_round_trip_in_simplified_characters() -> None:
    result = whisper().transcribe(speech16k(ZH), None)
    assert result.language == "zh"
    assert jiwer.cer(norm_zh(ZH), norm_zh(result.text)) <= MAX_CER_ZH, result.text
    assert "們" not in result.text and "氣" not in result.text  # Simplified, thanks to the prompt


@pytest.mark.slow
def test_silence_and_noise_give_no_text() -> None:
    rng = np.random.default_rng(1)
    assert whisper().transcribe(np.zeros(16000 * 2, np.float32), "en").text == ""
    assert whisper().transcribe((0.02 * rng.standard_normal(16000 * 2)).astype(np.float32), "zh").text == ""


def timed_words(text: str, ends: list[float]) -> tuple[tuple[float, float, str], ...]:
    """Whisper-style word timestamps: each word of ``text`` with a space before it, ending at ``ends``."""
    words = text.split()
    assert len(words) == len(ends)
    return tuple((start, end, f" {w}") for start, end, w in zip([0.0, *ends[:-1]], ends, words, strict=True))


class RecordedWordsASR(ASR):
    """A recognizer that answers, decode after decode, the word timestamps Whisper base gave on a real draw.

    The draw is Piper's EN_LONG speech (Piper's noise makes every synthesis differ) on which the
    incremental test once ended with nothing committed: the 6 s decode put a comma after "Yesterday",
    the 4 s and 8 s decodes did not.
    """

    name = "recorded-words"

    def __init__(self, decodes: list[tuple[tuple[float, float, str], ...]]) -> None:
        self._decodes = list(decodes)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        return "en", 1.0

    def transcribe(self, audio: np.ndarray, language: str | None = None, prompt: str | None = None,
                   offset_s: float = 0.0, word_timestamps: bool = False) -> Transcript:
        words = self._decodes.pop(0)
        text = "".join(w for _, _, w in words).strip()
        return Transcript(text, "en", 1.0, audio.size / 16000, ((offset_s, offset_s + audio.size / 16000, text),),
                          words)


def test_incremental_commits_when_decodes_differ_only_in_punctuation() -> None:
    first = "Yesterday I went to the market to buy some vegetables. The prices were higher than..."
    ends = [0.48, 0.72, 0.88, 1.02, 1.12, 1.44, 1.68, 1.84, 2.04, 2.54, 2.92, 3.32, 3.58, 3.86, 3.98]
    second = ("Yesterday, I went to the market to buy some vegetables. The prices were higher than last week, "
              "so I only bought care.")
    ends2 = [*ends[:10], 2.94, 3.32, 3.58, 3.86, 4.04, 4.26, 4.56, 5.06, 5.22, 5.5, 5.72, 5.98]
    asr = RecordedWordsASR([timed_words("Yesterday I went to the market to buy some", ends[:9]),
                            timed_words(first, ends), timed_words(second, ends2)])
    inc = IncrementalTranscriber(asr, None)  # type: ignore[arg-type]
    audio = np.zeros(16000 * 6, np.float32)
    for n in (32000, 64000, 96000):
        inc.update(audio[:n])
    assert inc.committed == [(0.0, 2.54, "Yesterday, I went to the market to buy some vegetables.")]
    assert inc.committed_s == 2.54
    assert inc.partial.startswith("Yesterday, I went to the market to buy some vegetables. The prices")


@pytest.mark.slow
def test_incremental_matches_one_shot_and_commits() -> None:
    audio = speech16k(EN_LONG)
    one_shot = whisper().transcribe(audio, "en").text
    inc = IncrementalTranscriber(whisper(), None)
    step = 16000 * 2
    for n in range(step, audio.size, step):  # as the user speaks: every 2 s
        inc.update(audio[:n])
    assert inc.language == "en"
    assert inc.committed_s > 2.0  # the start is final and will not be decoded again
    final = inc.finish(audio).text
    assert jiwer.wer(norm_en(one_shot), norm_en(final)) <= 0.1, (one_shot, final)
    assert jiwer.wer(norm_en(EN_LONG), norm_en(final)) <= MAX_WER_EN, final
