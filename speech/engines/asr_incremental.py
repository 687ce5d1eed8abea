"""Transcription while the user speaks: decode the growing utterance, commit stable prefixes.

See :class:`IncrementalTranscriber`.
"""

from __future__ import annotations

import re

import numpy as np

from speech.engines.asr_guards import join_segments
from speech.engines.asr_whisper import WhisperASR
from speech.engines.base import Transcript
from speech.engines.whisper_model import SAMPLE_RATE


class IncrementalTranscriber:
    """Transcribes a growing utterance so that little work is left at the end of speech.

    Call :meth:`update` with all the audio so far every second or so while the user
    speaks; segments that ended at least ``commit_margin_s`` before the live edge are
    committed and never decoded again, and each update re-decodes only the tail.
    :meth:`finish` decodes the remaining tail and returns the whole transcript.
    The language is fixed at the first update with enough audio. One per utterance;
    not thread-safe (the ASR underneath is).
    """

    def __init__(self, asr: WhisperASR, language: str | None = None, commit_margin_s: float = 1.5,
                 min_step_s: float = 1.0, min_language_s: float = 1.5) -> None:
        self.asr = asr
        self.language = language if language in ("zh", "en") else None
        self.commit_margin_s = commit_margin_s
        self.min_step_s = min_step_s
        self.min_language_s = min_language_s
        self.committed: list[tuple[float, float, str]] = []
        self._committed_s = 0.0
        self._last_len = 0
        self._previous_tail = ""
        self.partial = ""
        """Committed text plus the latest tail hypothesis."""

    @property
    def committed_s(self) -> float:
        """Audio (seconds from the utterance start) already committed."""
        return self._committed_s

    def update(self, audio: np.ndarray) -> str:
        """New audio arrived (``audio`` is the whole utterance so far); returns the partial text."""
        if audio.size - self._last_len < self.min_step_s * SAMPLE_RATE:
            return self.partial
        self._last_len = audio.size
        if self.language is None:
            if audio.size < self.min_language_s * SAMPLE_RATE:
                return self.partial
            self.language, _ = self.asr.detect_language(audio)
        live_edge = audio.size / SAMPLE_RATE
        tail = self._decode_tail(audio, word_timestamps=True)
        words = list(tail.words)
        # Commit up to the last word that (a) ends a clause (punctuation), (b) ended well before the
        # live edge, and (c) the previous decode agreed on, word for word (punctuation and case aside):
        # a stable prefix, never re-decoded again.
        cut = None
        for i, (_, end_s, word) in enumerate(words):
            if end_s > live_edge - self.commit_margin_s:
                break
            if word.strip() and word.strip()[-1] in _CLAUSE_END:
                prefix = _norm("".join(w for _, _, w in words[: i + 1]))
                if self._previous_tail.startswith(prefix):
                    cut = i
        if cut is not None:
            text = "".join(w for _, _, w in words[: cut + 1]).strip()
            self.committed.append((words[0][0], words[cut][1], text))
            self._committed_s = words[cut][1]
            rest = "".join(w for _, _, w in words[cut + 1:]).strip()
        else:
            rest = tail.text
        self._previous_tail = _norm(rest if cut is not None else tail.text)
        self.partial = join_segments([s[2] for s in self.committed] + [rest])
        return self.partial

    def finish(self, audio: np.ndarray) -> Transcript:
        """The utterance ended: decode the uncommitted tail and return the full transcript."""
        if self.language is None:
            self.language, _ = self.asr.detect_language(audio)
        tail = self._decode_tail(audio)
        segments = (*self.committed, *tail.segments)
        text = join_segments([s[2] for s in segments])
        return Transcript(text, self.language, 1.0, audio.size / SAMPLE_RATE, tuple(segments))

    def _decode_tail(self, audio: np.ndarray, word_timestamps: bool = False) -> Transcript:
        start = round(self._committed_s * SAMPLE_RATE)
        context = join_segments([s[2] for s in self.committed[-2:]])
        return self.asr.transcribe(audio[start:], self.language, prompt=context or None, offset_s=self._committed_s,
                                   word_timestamps=word_timestamps)


_CLAUSE_END = set(",.!?;:，。！？；：、")


def _norm(text: str) -> str:
    """The words of ``text`` only, for the agreement check between two decodes.

    Whisper flips punctuation and case between decodes of the same speech ("Yesterday I" then
    "Yesterday, I"): compared with it, one flipped comma before the cut blocked every commit of the
    utterance. Clause ends are still read off the current decode's words, with their punctuation.
    """
    return re.sub(r"[\W_]+", "", text).casefold()
