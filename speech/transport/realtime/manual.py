"""Manual turns (``turn_detection: null``): the client's audio is buffered here, not given to the session's VAD.

``input_audio_buffer.commit`` ends the turn: the buffer is transcribed by the server's recognizer
queue (the one every session's spoken turns use) and the transcript waits, as a typed item would,
for the client's ``response.create``. ``.clear`` drops the buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from speech.audio import pcm16_to_float
from speech.engines.asr_queue import FINAL
from speech.engines.factory import SpeechEngines
from speech.voice.utterance import recognize

Transcriber = Callable[[np.ndarray], Awaitable[str]]
"""16 kHz int16 speech to its transcript."""

MIN_COMMIT_MS = 100.0
"""Less audio than this is refused at commit (the Realtime API's own bound)."""
MAX_BUFFER_S = 120.0
"""A manual turn longer than this is refused: the buffer is bounded (a client that never commits)."""


def transcriber(engines: SpeechEngines) -> Transcriber:
    """The server's recognizer, as a manual turn uses it (end-of-speech priority, like a spoken turn's end)."""

    async def transcribe(pcm: np.ndarray) -> str:
        audio = pcm16_to_float(pcm)  # what the VAD hands a spoken turn's decode
        heard = await engines.recognizer.run(
            lambda: recognize(engines.asr, audio, 0, "", engines.language_hint, engines.turn_model), FINAL)
        return heard.text.strip()

    return transcribe


class AudioBuffer:
    """The audio appended since the last commit or clear, at 16 kHz."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._parts: list[np.ndarray] = []
        self._samples = 0

    @property
    def ms(self) -> float:
        """How much audio is buffered."""
        return self._samples * 1000 / self.rate

    def append(self, pcm: np.ndarray) -> None:
        """Add audio; ``ValueError`` past :data:`MAX_BUFFER_S` (nothing is added then)."""
        if self._samples + pcm.size > MAX_BUFFER_S * self.rate:
            raise ValueError(f"the input audio buffer holds at most {MAX_BUFFER_S:.0f} s: commit or clear it")
        self._parts.append(pcm)
        self._samples += pcm.size

    def take(self) -> np.ndarray:
        """The buffered audio, which leaves the buffer empty."""
        audio = np.concatenate(self._parts) if self._parts else np.zeros(0, np.int16)
        self.clear()
        return audio

    def clear(self) -> None:
        """Drop the buffered audio."""
        self._parts, self._samples = [], 0


async def finished(task: asyncio.Task[None] | None, timeout_s: float) -> None:
    """Wait for a commit's transcription (bounded; its own failure was already told to the client)."""
    if task is not None and not task.done():
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
