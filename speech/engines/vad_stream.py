"""The end-of-turn state machine over 16 kHz PCM: settings, events and the per-session stream.

A :class:`VADStream` is given a frame scorer (a callable from one 32 ms frame to a speech
probability, :class:`~speech.engines.base.FrameScorer`) and turns the probabilities into turn
events; it knows nothing of the model behind the scorer (``speech/engines/vad.py`` lends it a
Silero model from a pool). Events, in stream time (milliseconds of audio fed so far):

* :class:`SpeechStart` once ``min_speech_ms`` of speech is seen (a click is not a start);
* :class:`SpeechPause` after ``speculative_silence_ms`` of silence: a candidate end of
  turn on which speculative ASR/LLM work can begin;
* :class:`SpeechResume` when speech comes back after a pause (the speculation is stale);
* :class:`SpeechEnd` after ``min_silence_ms`` of silence, or at ``max_utterance_s``.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from speech.audio import pcm16_to_float
from speech.engines.base import FrameScorer

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512
"""Silero's window at 16 kHz: 32 ms."""
FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE
GAP_FRAMES = 3
"""Silent frames (96 ms) inside speech that make a gap between words: a safe place to cut."""


@dataclass(frozen=True)
class VADSettings:
    """Settings of the end-of-turn detector."""

    vad_thresh: float = field(default=0.5, metadata={
        "help": "Speech probability at or above which a 32 ms frame counts as speech (0-1)."})
    min_silence_ms: int = field(default=800, metadata={
        "help": "Silence that confirms the end of a turn, in ms."})
    min_speech_ms: int = field(default=250, metadata={
        "help": "Speech needed before a start is confirmed, in ms (so a click or cough-let does not count)."})
    speculative_silence_ms: int = field(default=300, metadata={
        "help": "Short pause after which speculative ASR/LLM work starts, in ms (below min_silence_ms)."})
    max_utterance_s: float = field(default=30.0, metadata={
        "help": "An utterance longer than this is ended by force, in seconds."})
    pre_roll_ms: int = field(default=300, metadata={
        "help": "Audio kept before the detected start, so the first syllable is not cut."})
    post_roll_ms: int = field(default=200, metadata={
        "help": "Silence kept after the last speech frame in the utterance audio."})
    partial_every_s: float = field(default=1.0, metadata={
        "help": "While the user speaks without pausing, transcribe the speech so far at most this often "
                "(committed at a short gap between words, shown as transcript.partial); 0: only at pauses."})

    def __post_init__(self) -> None:
        if not 0.0 < self.vad_thresh < 1.0:
            raise ValueError("vad_thresh must be between 0 and 1")
        if self.partial_every_s < 0:
            raise ValueError("partial_every_s must not be negative")
        if self.speculative_silence_ms > self.min_silence_ms:
            raise ValueError("speculative_silence_ms must not exceed min_silence_ms")
        if self.min_speech_ms < 0 or self.min_silence_ms <= 0 or self.max_utterance_s <= 0:
            raise ValueError("durations must be positive")


@dataclass(frozen=True)
class SpeechStart:
    """Speech has begun; ``t_ms`` is where it began (not when it was confirmed)."""

    t_ms: float


@dataclass(frozen=True)
class SpeechPause:
    """A short pause: a candidate end of turn.

    ``audio`` is the utterance so far (float32, 16 kHz), ``speech_end_ms`` the end of
    the last speech frame: a later :class:`SpeechEnd` with the same ``speech_end_ms``
    means nothing was said in between, so work started on this audio is still valid.
    """

    t_ms: float
    speech_end_ms: float
    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SpeechResume:
    """Speech came back after a :class:`SpeechPause`: the speculative work is stale."""

    t_ms: float


@dataclass(frozen=True)
class SpeechEnd:
    """The confirmed end of a turn, with the utterance audio (float32, 16 kHz).

    ``forced`` is true when ``max_utterance_s`` ended it rather than silence.
    """

    t_ms: float
    speech_end_ms: float
    audio: np.ndarray = field(repr=False)
    forced: bool = False


VADEvent = SpeechStart | SpeechPause | SpeechResume | SpeechEnd


class VADStream:
    """One session's detector: feed PCM of any size, get events back.

    Not thread-safe (the scorer holds recurrent state); one per session.
    """

    def __init__(self, scorer: FrameScorer, args: VADSettings, on_close: Callable[[], object] | None = None) -> None:
        self.args = args
        self._server_args = args
        self._score = scorer
        # A finalizer, so that a stream lost without close() still runs on_close (once, either way).
        self._on_close = weakref.finalize(self, on_close) if on_close is not None else None
        self.closed = False
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_done = 0
        pre_frames = max(1, round(args.pre_roll_ms / FRAME_MS))
        self._pre_roll: deque[np.ndarray] = deque(maxlen=pre_frames)
        self._neg_thresh = max(0.01, args.vad_thresh - 0.15)
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._in_speech = False
        self._candidate: list[np.ndarray] = []
        self._candidate_start = 0
        self._candidate_speech = 0
        self._candidate_gap = 0
        self._utterance: list[np.ndarray] = []
        self._start_frame = 0
        self._last_speech_frame = 0
        self._silence = 0
        self._paused = False
        self._end_silence_ms: float = self.args.min_silence_ms
        self._gaps: list[int] = []
        """Samples from the utterance start at the middle of each short gap inside speech."""

    @property
    def in_speech(self) -> bool:
        """True between a SpeechStart and its SpeechEnd."""
        return self._in_speech

    @property
    def paused(self) -> bool:
        """In speech, after a SpeechPause and before speech resumes."""
        return self._in_speech and self._paused

    @property
    def utterance_samples(self) -> int:
        """Samples of the current utterance so far (0 between utterances)."""
        return len(self._utterance) * FRAME_SAMPLES if self._in_speech else 0

    def quiet_point(self, after: int, before: int) -> int | None:
        """The latest short gap between words in ``(after, before)`` samples from the utterance start.

        A cut there splits no word, so the speech before it can be transcribed for good while
        the user goes on (speech/voice/session.py, continuous-speech partials).
        """
        points = [g for g in self._gaps if after < g < before]
        return points[-1] if points else None

    def audio_so_far(self) -> np.ndarray:
        """The current utterance's audio so far (float32, 16 kHz; empty between utterances)."""
        if not self._in_speech or not self._utterance:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._utterance)

    @property
    def onset(self) -> bool:
        """A probable start of speech is being checked (not yet ``min_speech_ms`` long).

        Polled after :meth:`process`: a reply can stop sounding at once and go on if the
        sound then turns out to be a click or a cough (the candidate is dropped).
        """
        return not self._in_speech and bool(self._candidate)

    def set_end_silence(self, ms: float) -> None:
        """Silence that ends the current turn, from now until speech resumes (then ``min_silence_ms`` again).

        The turn-end policy (speech/voice/turn_end.py) shortens it for a plainly finished sentence and
        lengthens it for a trailing "and". Already past it, the next frame ends the turn.
        """
        self._end_silence_ms = max(float(self.args.speculative_silence_ms), float(ms))

    def retune(self, vad_thresh: float | None = None, min_silence_ms: int | None = None,
               pre_roll_ms: int | None = None) -> None:
        """This session's own threshold, end-of-turn silence and pre-roll (a Realtime client's ``turn_detection``).

        ``None`` is the server's setting. ``ValueError`` (nothing changed) for values :class:`VADSettings`
        refuses. A silence shorter than the speculative pause makes speculation start at that silence.
        """
        base = self._server_args
        changes: dict[str, Any] = {}
        if vad_thresh is not None:
            changes["vad_thresh"] = vad_thresh
        if min_silence_ms is not None:
            changes["min_silence_ms"] = min_silence_ms
            changes["speculative_silence_ms"] = min(base.speculative_silence_ms, min_silence_ms)
        if pre_roll_ms is not None:
            changes["pre_roll_ms"] = pre_roll_ms
        self.args = replace(base, **changes)
        self._neg_thresh = max(0.01, self.args.vad_thresh - 0.15)
        self._pre_roll = deque(self._pre_roll, maxlen=max(1, round(self.args.pre_roll_ms / FRAME_MS)))
        if not self._in_speech:
            self._end_silence_ms = self.args.min_silence_ms

    @property
    def t_ms(self) -> float:
        """Stream time: milliseconds of audio scored so far."""
        return self._frames_done * FRAME_MS

    def process(self, pcm: bytes | np.ndarray) -> list[VADEvent]:
        """Feed 16 kHz mono PCM (int16 bytes/array, or float32) and return the events it caused."""
        audio = pcm16_to_float(pcm)
        if self._pending.size:
            audio = np.concatenate([self._pending, audio])
        n = audio.size // FRAME_SAMPLES
        self._pending = audio[n * FRAME_SAMPLES:].copy()
        events: list[VADEvent] = []
        for i in range(n):
            frame = audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
            events.extend(self._frame(np.ascontiguousarray(frame)))
        return events

    def flush(self) -> list[VADEvent]:
        """End of input: close an utterance in progress (as a forced end)."""
        if not self._in_speech:
            return []
        return [self._end(forced=True)]

    def reset(self) -> None:
        """Forget the current utterance (e.g. after the client interrupted)."""
        self._reset_turn()

    def close(self) -> None:
        """The session is over: hand the model back (the stream cannot be fed any more). Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._score = _closed_scorer
        if self._on_close is not None:
            self._on_close()

    # --- the state machine ---------------------------------------------------------

    def _frame(self, frame: np.ndarray) -> list[VADEvent]:
        prob = self._score(frame)
        index = self._frames_done
        self._frames_done += 1
        if not self._in_speech:
            return self._idle_frame(frame, prob, index)
        return self._speech_frame(frame, prob, index)

    def _idle_frame(self, frame: np.ndarray, prob: float, index: int) -> list[VADEvent]:
        a = self.args
        if not self._candidate:
            if prob >= a.vad_thresh:
                self._candidate = [frame]
                self._candidate_start = index
                self._candidate_speech = 1
                self._candidate_gap = 0
            else:
                self._pre_roll.append(frame)
                return []
        else:
            self._candidate.append(frame)
            if prob >= a.vad_thresh:
                self._candidate_speech += 1
                self._candidate_gap = 0
            else:
                self._candidate_gap += 1
                # A candidate broken by a real gap was a noise burst: drop it.
                if self._candidate_gap * FRAME_MS >= max(a.min_speech_ms, 100):
                    for f in self._candidate:
                        self._pre_roll.append(f)
                    self._candidate = []
                    return []
        if self._candidate_speech * FRAME_MS < a.min_speech_ms:
            return []
        # Confirmed: the utterance is pre-roll + candidate frames.
        self._in_speech = True
        self._start_frame = self._candidate_start
        self._utterance = [*self._pre_roll, *self._candidate]
        self._pre_roll.clear()
        self._last_speech_frame = index
        self._silence = self._candidate_gap
        self._candidate = []
        return [SpeechStart(t_ms=self._candidate_start * FRAME_MS)]

    def _speech_frame(self, frame: np.ndarray, prob: float, index: int) -> list[VADEvent]:
        a = self.args
        self._utterance.append(frame)
        events: list[VADEvent] = []
        # Hysteresis: once in speech, a frame needs to fall clearly below the threshold to count as silence.
        # In a pause (speculation running) speech must come back over the threshold itself: a frame between
        # the two (a breath, room noise) would move the turn's end and reset its chosen silence without a
        # SpeechResume, and the confirmed turn's audio would no longer be the one decoded at the pause.
        if prob >= (a.vad_thresh if self._paused else self._neg_thresh):
            if self._silence >= GAP_FRAMES and not self._paused:  # a short gap between words ends here
                self._gaps.append((len(self._utterance) - 1) * FRAME_SAMPLES - self._silence * FRAME_SAMPLES // 2)
            self._last_speech_frame = index
            self._silence = 0
            self._end_silence_ms = a.min_silence_ms
            if self._paused:
                self._paused = False
                events.append(SpeechResume(t_ms=index * FRAME_MS))
        else:
            self._silence += 1
        silence_ms = self._silence * FRAME_MS
        if not self._paused and self._silence and silence_ms >= a.speculative_silence_ms:
            self._paused = True
            events.append(SpeechPause(t_ms=(index + 1) * FRAME_MS, speech_end_ms=self._speech_end_ms(),
                                      audio=self._audio()))
        if silence_ms >= self._end_silence_ms:
            events.append(self._end(forced=False))
        elif (index + 1 - self._start_frame) * FRAME_MS >= a.max_utterance_s * 1000:
            events.append(self._end(forced=True))
        return events

    def _speech_end_ms(self) -> float:
        return (self._last_speech_frame + 1) * FRAME_MS

    def _audio(self) -> np.ndarray:
        """The utterance audio up to the last speech frame plus post-roll."""
        audio = np.concatenate(self._utterance)
        keep_after = round(self.args.post_roll_ms * SAMPLE_RATE / 1000)
        trailing = self._silence * FRAME_SAMPLES
        cut = audio.size - max(0, trailing - keep_after)
        return audio[:cut]

    def _end(self, forced: bool) -> SpeechEnd:
        end = SpeechEnd(t_ms=self.t_ms, speech_end_ms=self._speech_end_ms(), audio=self._audio(), forced=forced)
        self._reset_turn()
        return end


def _closed_scorer(frame: np.ndarray) -> float:
    raise RuntimeError("this VAD stream is closed (its session ended)")
