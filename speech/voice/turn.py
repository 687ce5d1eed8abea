"""A spoken turn's bookkeeping: the work started at a pause, the turn rate, the clock that dates the user's audio.

The session (speech/voice/session.py) keeps one :class:`Speculation` per pause it speculates on,
and one for a turn confirmed without one; :class:`TurnRate` caps how often turns start;
:class:`AudioClock` turns the VAD's stream times (ms of audio) into the wall times the turn's
metrics and trace marks are measured from.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from speech.voice.reply import Reply, ReplyTiming

_SPEC_IDS = itertools.count(1)


@dataclass
class Speculation:
    """Work started at a short pause, kept only if the pause turns out to end the turn."""

    speech_end_ms: float
    timing: ReplyTiming
    utterance: int = 0
    """Which utterance (SpokenSoFar.utterance) the audio belongs to."""
    heard: tuple[int, str, str] | None = None
    """(samples, text, language) once transcribed: kept as a partial if the user goes on."""
    task: asyncio.Task[Any] | None = None
    reply: Reply | None = None
    confirmed: bool = False
    dropped: bool = False
    asr_failed: bool = False
    """Transcription failed before the turn was confirmed: the error is sent at confirmation."""
    merged: bool = False
    """The user went on before hearing the answer: this turn's words open the next turn."""
    id: int = field(default_factory=lambda: next(_SPEC_IDS))
    """Ties the trace marks of this work together (speech/voice/trace.py)."""


class AudioClock:
    """When each stretch of the client's audio arrived: maps audio time (ms fed so far) to wall time."""

    KEEP = 4096
    """Frames remembered (the oldest half is dropped past this): far more than one utterance."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._audio_ms = 0.0
        self._received: list[tuple[float, float]] = []
        """(audio end in ms, wall time received) of recent frames."""

    def received(self, samples: int, now: float) -> None:
        """``samples`` more audio (at ``rate``) arrived at ``now`` (perf_counter seconds)."""
        self._audio_ms += samples * 1000 / self._rate
        self._received.append((self._audio_ms, now))
        if len(self._received) > self.KEEP:
            del self._received[: self.KEEP // 2]

    def wall_time(self, audio_ms: float) -> float:
        """When the client sent the audio at ``audio_ms`` (approximately: frame granularity)."""
        marks = [m for m, _ in self._received]
        i = min(bisect_left(marks, audio_ms), len(self._received) - 1)
        return self._received[i][1] if self._received else time.perf_counter()


class TurnRate:
    """At most ``per_minute`` turns in any 60 s."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._starts: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Whether a turn may start at ``now`` (monotonic seconds); an allowed one is counted."""
        while self._starts and now - self._starts[0] > 60:
            self._starts.popleft()
        if len(self._starts) >= self.per_minute:
            return False
        self._starts.append(now)
        return True
