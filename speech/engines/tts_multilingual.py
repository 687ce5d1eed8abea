"""One synthesizer over several: each run of text goes to its language's engine, all at one rate."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from speech.audio import resample_pcm16
from speech.engines.base import OUTPUT_SAMPLE_RATE, TTS
from speech.text import split_by_script


class Resampled:
    """Wraps an engine so it yields at ``sample_rate`` (libsoxr, per chunk)."""

    def __init__(self, engine: TTS, sample_rate: int) -> None:
        self.engine = engine
        self.sample_rate = sample_rate
        self.name = engine.name

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """The wrapped engine's chunks, resampled."""
        for chunk in self.engine.synthesize(text, language):
            if self.engine.sample_rate != self.sample_rate:
                chunk = resample_pcm16(chunk, self.engine.sample_rate, self.sample_rate)
            if chunk.size:
                yield chunk


class MultilingualTTS:
    """Picks an engine per run of text by script: Han characters → ``zh``, the rest → ``en``.

    All engines are resampled to ``sample_rate``. Thread-safe if its engines are.
    """

    name = "multilingual"

    def __init__(self, engines: Mapping[str, TTS], sample_rate: int = OUTPUT_SAMPLE_RATE) -> None:
        if "en" not in engines:
            raise ValueError("an English engine is required")
        self.sample_rate = sample_rate
        self.engines = {lang: e if e.sample_rate == sample_rate else Resampled(e, sample_rate)
                        for lang, e in engines.items()}
        self.name = "+".join(f"{lang}:{e.name}" for lang, e in self.engines.items())

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Speak ``text``, switching engine where the script changes."""
        default = language if language in self.engines else "en"
        for lang, run in split_by_script(text, default=default):
            engine = self.engines.get(lang) or self.engines["en"]
            yield from engine.synthesize(run, lang)
