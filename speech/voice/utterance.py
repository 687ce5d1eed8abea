"""What one utterance has said so far: transcripts committed at the pauses the user went on from.

Every pause of ``speculative_silence_ms`` starts a decode of the utterance so far, in
case the pause ends the turn. When the user goes on instead, that decode is not
wasted: it covers the audio up to the pause, whose cut lies in silence (the VAD keeps
``post_roll_ms`` of a pause of at least ``speculative_silence_ms``), so it is
committed and the next decode covers only the audio after it, with the committed
words as context. At the end of speech only the last stretch is left to decode.

Speech that goes on without such a pause is committed the same way at short gaps between
words (:func:`partial_chunk`), about once a second, so a long sentence too leaves only its
last stretch to the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from speech.engines.asr_queue import FINAL
from speech.engines.base import Transcript, TurnModel
from speech.engines.vad import VADStream
from speech.text import join_words
from speech.voice import trace

log = logging.getLogger(__name__)


@dataclass
class SpokenSoFar:
    """The committed part of the current utterance."""

    utterance: int = 0
    """Which utterance of the session (counts SpeechStarts)."""
    cut: int = 0
    """Samples from the utterance start already transcribed."""
    text: str = ""
    language: str | None = None

    def restart(self) -> None:
        """A new utterance begins: nothing is committed."""
        self.utterance += 1
        self.cut, self.text, self.language = 0, "", None

    def commit(self, utterance: int, cut: int, text: str, language: str) -> bool:
        """Commit ``text`` as the transcript of the first ``cut`` samples (if still this utterance and newer)."""
        if utterance != self.utterance or cut <= self.cut or not text:
            return False
        self.cut, self.text, self.language = cut, text, language
        return True


PARTIAL_AFTER_S = 3.0
"""Uncommitted speech before a continuous-speech partial pays: the short window's 8 s floor makes
the end-of-speech decode of anything under ~4 s cost the same (speech/engines/whisper_model.py)."""
PARTIAL_CHUNK_S = 1.5
"""The shortest stretch a partial commits (Whisper needs some context)."""
RATE = 16000


def partial_chunk(vad: VADStream, cut: int, last_at: int, every_s: float) -> np.ndarray | None:
    """The utterance audio up to a gap between words, if a continuous-speech partial is due now.

    Due when the user is speaking (not pausing: a pause has its own decode), ``every_s`` has
    passed since the last one (``last_at``, in utterance samples), at least ``PARTIAL_AFTER_S``
    is uncommitted after ``cut``, and a gap lies ``PARTIAL_CHUNK_S`` or more after ``cut``.
    """
    if every_s <= 0 or not vad.in_speech or vad.paused:
        return None
    length = vad.utterance_samples
    if length - last_at < every_s * RATE or length - cut < PARTIAL_AFTER_S * RATE:
        return None
    point = vad.quiet_point(cut + round(PARTIAL_CHUNK_S * RATE), length)
    return None if point is None else vad.audio_so_far()[:point]


@dataclass(frozen=True)
class Heard:
    """One decode's result: the whole utterance's text so far and the turn model's view of it."""

    text: str
    language: str
    tail: Transcript
    complete_prob: float | None


def recognize(asr: Any, audio: np.ndarray, cut: int, committed: str, language: str | None,
              turn_model: TurnModel | None) -> Heard:
    """Decode ``audio[cut:]`` after the ``committed`` text (run on the recognizer thread)."""
    kwargs: dict[str, Any] = {}
    if committed and getattr(asr, "accepts_prompt", False):
        kwargs["prompt"] = committed[-120:]
    tail = asr.transcribe(audio[cut:], language, **kwargs)
    text = join_words(committed, tail.text.strip())
    prob = turn_model(audio) if turn_model is not None and text else None
    return Heard(text, tail.language, tail, prob)


def traced_recognize(spec: int, asr: Any, audio: np.ndarray, cut: int, committed: str, language: str | None,
                     turn_model: TurnModel | None) -> Heard:
    """:func:`recognize`, with trace marks when the decode of ``spec`` starts and ends on the recognizer thread."""
    trace.mark("decode_start", spec=spec, seconds=round((audio.size - cut) / RATE, 2))
    try:
        return recognize(asr, audio, cut, committed, language, turn_model)
    finally:
        trace.mark("decode_end", spec=spec)


class UtteranceDecoder:
    """One session's decodes of its current utterance, each covering only what is not committed yet.

    Continuous-speech partials (:meth:`maybe_partial`) commit as the user speaks; :meth:`decode` is the
    decode at a pause or turn end, after the session's partial in flight, from that partial's commit.
    """

    def __init__(self, engines: Any, spawn: Callable[[Any], asyncio.Task[Any]],
                 show: Callable[[str], Awaitable[None]]) -> None:
        self.engines = engines
        self.so_far = SpokenSoFar()
        self._spawn = spawn
        self._show = show
        """Shows a partial transcript of the utterance (the session adds the words of an unheard turn)."""
        self._partial_task: asyncio.Task[Any] | None = None
        self._partial_at = 0
        """Utterance samples when the last continuous-speech partial started."""

    def restart(self) -> None:
        """A new utterance begins."""
        self.so_far.restart()
        self._partial_at = 0

    def maybe_partial(self, vad: VADStream) -> None:
        """While the user speaks on without pausing: transcribe up to a gap between words, for good.

        One at a time per session, and only when the recognizer is free (``try_partial``): an
        end-of-speech decode of any session is never queued behind one.
        """
        if self._partial_task is None:
            chunk = partial_chunk(vad, self.so_far.cut, self._partial_at, self.engines.args.partial_every_s)
            if chunk is not None:
                self._partial_at = vad.utterance_samples
                self._partial_task = self._spawn(self._partial(chunk))

    async def _partial(self, audio: np.ndarray) -> None:
        so_far = self.so_far
        utterance, cut, committed = so_far.utterance, so_far.cut, so_far.text
        language = self.engines.language_hint or so_far.language
        try:
            ran, heard = await self.engines.recognizer.try_partial(
                lambda: traced_recognize(0, self.engines.asr, audio, cut, committed, language, None))
            if ran and heard.tail.text.strip() and so_far.commit(utterance, audio.size, heard.text, heard.language):
                await self._show(heard.text)
        except Exception as exc:  # a partial is only a head start: the end-of-speech decode covers it
            log.warning("partial ASR failed: %s", type(exc).__name__)
        finally:
            self._partial_task = None

    async def decode(self, audio: np.ndarray, utterance: int | None, trace_id: int) -> Heard:
        """The whole utterance's text, decoding only past the commit of ``utterance`` (None: all of it)."""
        trace.mark("decode_asked", spec=trace_id)
        partial = self._partial_task
        if partial is not None:  # it is ahead on the recognizer anyway: then its commit is used
            await asyncio.shield(partial)
        trace.mark("decode_queued", spec=trace_id)
        so_far = self.so_far
        cut, committed = 0, ""
        if utterance == so_far.utterance and so_far.cut < audio.size:
            cut, committed = so_far.cut, so_far.text  # the part before a pause the user went on from
        language = self.engines.language_hint or (so_far.language if cut else None)
        heard: Heard = await self.engines.recognizer.run(
            lambda: traced_recognize(trace_id, self.engines.asr, audio, cut, committed, language,
                                     self.engines.turn_model), FINAL)
        return heard
