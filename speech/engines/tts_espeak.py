"""espeak-ng from Debian: always available, instant, robotic; Mandarin reads pinyin (``cmn-latn-pinyin``)."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from agent.language import has_han
from speech.audio import resample_pcm16
from speech.engines.base import EngineUnavailableError


@dataclass(frozen=True)
class EspeakSettings:
    """espeak-ng settings."""

    espeak_voice_en: str = field(default="en-us", metadata={"help": "espeak-ng voice for English."})
    espeak_voice_zh: str = field(default="cmn-latn-pinyin", metadata={
        "help": "espeak-ng voice for Mandarin ('cmn-latn-pinyin' reads pinyin properly; plain 'zh' does not)."})
    espeak_speed: int = field(default=165, metadata={"help": "espeak-ng speed in words per minute."})


class EspeakTTS:
    """espeak-ng in a subprocess (``espeak-ng --stdout``): always available, thread-safe.

    Yields one chunk per call: espeak-ng is fast enough (a few ms per sentence)
    that streaming inside a sentence is not worth it.
    """

    name = "espeak-ng"
    sample_rate = 22050

    def __init__(self, args: EspeakSettings | None = None) -> None:
        self.args = args or EspeakSettings()
        self._binary = shutil.which("espeak-ng")
        if self._binary is None:
            raise EngineUnavailableError("espeak-ng is not installed: run scripts/setup-system.sh "
                                         "(apt-get install espeak-ng)")

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Speak ``text`` with the voice for ``language`` (auto: by script)."""
        text = text.strip()
        if not text:
            return
        lang = language if language in ("zh", "en") else ("zh" if has_han(text) else "en")
        voice = self.args.espeak_voice_zh if lang == "zh" else self.args.espeak_voice_en
        assert self._binary is not None
        # "--" so text starting with "-" is not read as a flag; text goes through stdin, never a shell.
        proc = subprocess.run([self._binary, "--stdout", "-v", voice, "-s", str(self.args.espeak_speed)],
                              input=text.encode("utf-8"), capture_output=True, check=True, timeout=60)
        pcm, rate = _read_wav(proc.stdout)
        if rate != self.sample_rate:
            pcm = resample_pcm16(pcm, rate, self.sample_rate)
        if pcm.size:
            yield pcm


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Parse a mono 16-bit WAV (espeak-ng writes bogus sizes on stdout; wave reads to EOF anyway)."""
    with wave.open(io.BytesIO(data)) as w:
        rate = w.getframerate()
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError("expected 16-bit mono WAV")
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2").copy(), rate
