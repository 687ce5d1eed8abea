"""The engine interfaces every stage talks to, and the one error an optional engine raises.

Real engines and the test fakes (``tests/support/engine_fakes.py``) both implement these; the
sessions, the factory and the transports only ever see these types.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from speech.engines.vad import VADSettings, VADStream

OUTPUT_SAMPLE_RATE = 22050
"""The one rate every TTS engine is resampled to (Piper's and espeak-ng's native rate)."""


class EngineUnavailableError(RuntimeError):
    """An optional engine's package or model is missing; the message says how to get it."""


class TTS(Protocol):
    """A streaming synthesizer: int16 mono chunks at ``sample_rate``, first chunk as early as possible."""

    sample_rate: int
    name: str

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Speak ``text`` (``zh``/``en``, or detected) as int16 chunks, the first one as early as possible."""


@dataclass(frozen=True)
class Transcript:
    """What was said: text, language (``zh``/``en``), timing of the decode."""

    text: str
    language: str
    language_prob: float = 1.0
    duration_s: float = 0.0
    """Length of the audio that was transcribed."""
    segments: tuple[tuple[float, float, str], ...] = ()
    """(start s, end s, text) of each decoded segment."""
    words: tuple[tuple[float, float, str], ...] = ()
    """(start s, end s, word) when word timestamps were asked for."""


class ASR(Protocol):
    """A speech recognizer for 16 kHz float32 mono audio."""

    name: str

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        """Transcribe ``audio``, in ``language`` if given, else in the language detected."""


class FrameScorer(Protocol):
    """Speech probability of one 512-sample float32 frame at 16 kHz; stateful per stream."""

    def __call__(self, frame: np.ndarray) -> float:
        """The speech probability of ``frame``, 0 to 1."""


class VAD(Protocol):
    """A voice activity detector: makes one independent stream per session."""

    args: VADSettings

    def new_stream(self) -> VADStream:
        """A fresh, independent detector for one session."""


class TurnModel(Protocol):
    """Probability that the turn is complete, from the utterance audio (16 kHz float32)."""

    def __call__(self, audio: np.ndarray) -> float:
        """The probability, 0 to 1, that the turn is complete."""
