"""Whisper on CTranslate2, with an encoder window fitted to the audio.

faster-whisper pads every call to a 30 s window (3,000 mel frames), so a 3 s turn
costs as much as 30 s of speech. The CTranslate2 encoder accepts shorter inputs, so
the default ("short" window) pads the audio with silence to its length plus
``whisper_window_margin_s``, at least ``whisper_window_floor_s``, and calls
``ctranslate2.models.Whisper`` ``encode``/``detect_language``/``generate`` directly
(faster-whisper's feature extractor and tokenizer are reused). The margin matters:
with the window barely longer than the audio Whisper loops. ``--whisper_window full``
restores faster-whisper's own 30 s path, which also serves word timestamps and audio
longer than 30 s.

One encoder pass per call: the language (auto mode) is read off the same encoder
output among ``asr_languages`` only, so a Chinese turn gets its prompt.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import numpy as np

from speech.engines.asr_guards import is_degenerate, join_segments, strip_repeats, to_simplified
from speech.engines.base import EngineUnavailableError, Transcript
from speech.engines.whisper_model import SAMPLE_RATE, ZH_PROMPT, WhisperSettings, resolve_whisper_model

HOP = 160
"""Samples per mel frame (10 ms)."""
FULL_FRAMES = 3000
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0


def window_frames(duration_s: float, margin_s: float, floor_s: float) -> int:
    """Mel frames of the short window for ``duration_s`` of audio (at most the 30 s window)."""
    return min(FULL_FRAMES, max(round(floor_s * 100), math.ceil((duration_s + margin_s) * 100)))


def token_budget(duration_s: float, language: str | None) -> int:
    """New tokens allowed: in proportion to the audio, so a loop is cut short (the filters then drop it)."""
    per_s = 16 if language in ("zh", None) else 12
    return min(int(20 + per_s * duration_s), 440)


class WhisperASR:
    """Whisper on CTranslate2 (CPU, int8). Load once per process and share.

    Thread-safe: decodes are serialized with a lock, since two at once on a small
    CPU only slow each other down (and CTranslate2 would need extra workers).
    """

    accepts_prompt = True
    """``transcribe`` takes ``prompt=`` (context text), e.g. what was already committed."""

    def __init__(self, args: WhisperSettings | None = None) -> None:
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as exc:
            raise EngineUnavailableError("faster-whisper is missing: pip install -r requirements-speech.txt") from exc
        self.args = args or WhisperSettings()
        folder, self.multilingual = resolve_whisper_model(self.args.whisper_model)
        self.name = f"whisper-{self.args.whisper_model}" if "/" not in self.args.whisper_model else "whisper"
        self.model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                  cpu_threads=self.args.whisper_threads or (os.cpu_count() or 1), num_workers=1)
        self.languages = tuple(x.strip() for x in self.args.asr_languages.split(",") if x.strip()) or ("en",)
        self._lock = threading.Lock()
        self._tokenizer_cls = Tokenizer
        self._tokenizers: dict[str, Any] = {}
        self.encoder_passes = 0
        """Encoder runs of the short path so far: one per call."""
        self.loop_fallbacks = 0
        """Short-window decodes that looped and were decoded again with the 30 s window."""
        self.full_passes = 0
        """Segments decoded by the 30 s path so far (each one a 30 s encoder pass)."""

    def _tokenizer(self, language: str) -> Any:
        tok = self._tokenizers.get(language)
        if tok is None:
            tok = self._tokenizers[language] = self._tokenizer_cls(
                self.model.hf_tokenizer, self.multilingual, task="transcribe",
                language=language if self.multilingual else None)
        return tok

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The most likely language among ``asr_languages``, with its share of their probability."""
        if not self.multilingual:
            return "en", 1.0
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)[: 30 * SAMPLE_RATE]
        with self._lock:
            if self.args.whisper_window == "full":
                from speech.engines.asr_whisper_full import detect_language_full

                return detect_language_full(self, audio)
            encoded = self._encode(audio)
            return self._pick_language(encoded)

    def _pick_language(self, encoded: Any) -> tuple[str, float]:
        probs = self.model.model.detect_language(encoded)[0]
        allowed = [(p, tok[2:-2]) for tok, p in probs if tok[2:-2] in self.languages]
        if not allowed:
            return self.languages[0], 0.0
        p, lang = max(allowed)
        return lang, p / (sum(x for x, _ in allowed) or 1.0)

    def _encode(self, audio: np.ndarray) -> Any:
        """Log-mel of the audio padded with silence to the short window, through the encoder."""
        frames = window_frames(audio.size / SAMPLE_RATE, self.args.whisper_window_margin_s,
                               self.args.whisper_window_floor_s)
        padded = np.zeros(frames * HOP, dtype=np.float32)
        padded[: min(audio.size, padded.size)] = audio[: padded.size]
        features = self.model.feature_extractor(padded)[:, :frames]
        self.encoder_passes += 1
        return self.model.encode(features)

    def transcribe(self, audio: np.ndarray, language: str | None = None, prompt: str | None = None,
                   offset_s: float = 0.0, word_timestamps: bool = False) -> Transcript:
        """Transcribe float32 16 kHz audio; ``language`` None or "auto" detects zh/en.

        ``prompt`` is extra context (e.g. text already committed); ``offset_s`` is added to segment times.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        duration = audio.size / SAMPLE_RATE
        if audio.size < SAMPLE_RATE // 10:
            return Transcript("", language if language in ("zh", "en") else self.languages[0], 0.0, duration)
        short = self.args.whisper_window == "short" and not word_timestamps
        if not short or window_frames(duration, self.args.whisper_window_margin_s, 0) > FULL_FRAMES:
            from speech.engines.asr_whisper_full import transcribe_full

            return transcribe_full(self, audio, language, prompt, offset_s, word_timestamps)
        with self._lock:
            encoded = self._encode(audio)
            prob = 1.0
            if not self.multilingual:
                language = "en"
            elif not language or language == "auto":
                language, prob = self._pick_language(encoded)
            text = self._generate(encoded, language, prompt, duration)
        if text is None:  # a loop: what the 30 s window would have said (rare, and costs one 30 s decode)
            self.loop_fallbacks += 1
            from speech.engines.asr_whisper_full import transcribe_full

            return transcribe_full(self, audio, language, prompt, offset_s, word_timestamps)
        if language == "zh" and self.args.zh_simplify == "zhconv":
            text = to_simplified(text)
        segments = ((offset_s, offset_s + duration, text),) if text else ()
        return Transcript(text, language, prob, duration, segments)

    def _generate(self, encoded: Any, language: str, prompt: str | None, duration: float) -> str | None:
        """Greedy decode without timestamps; the no-speech and loop guards applied.

        None when the output looks like a loop: it ran into the token budget, or the loop filters
        caught it. The short window loops more often than the 30 s one on hard input (robotic
        Mandarin, bench/asr_window.py), so the caller decodes such audio again with the full window.
        """
        tok = self._tokenizer(language)
        initial = ZH_PROMPT if language == "zh" else ""
        if prompt:
            initial = f"{initial}{prompt}"[-200:]
        tokens: list[int] = []
        if initial:
            tokens = [tok.sot_prev, *tok.encode(" " + initial.strip())[-200:]]
        tokens += [*tok.sot_sequence, tok.no_timestamps]
        # Greedy at temperature 0 only: a temperature fallback re-decodes up to 448 sampled tokens when a
        # hypothesis looks poor, which costs seconds on CPU; the token budget bounds a loop instead.
        result = self.model.model.generate(
            encoded, [tokens], beam_size=self.args.whisper_beam_size, max_length=len(tokens) + token_budget(
                duration, language), return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=list(self._suppressed(tok)))[0]
        ids = [t for t in result.sequences_ids[0] if t < tok.eot]
        if len(ids) >= token_budget(duration, language):
            return None
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1) if ids else LOW_LOGPROB - 1
        if result.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOW_LOGPROB:
            return ""  # probably silence or noise
        raw = tok.decode(ids).strip()
        text = strip_repeats(raw)
        if text != raw or is_degenerate(text):
            return None
        return join_segments([text]) if text else ""

    def _suppressed(self, tok: Any) -> tuple[int, ...]:
        cached = getattr(self, "_suppressed_cache", None)
        if cached is None:
            from faster_whisper.transcribe import get_suppressed_tokens

            cached = self._suppressed_cache = tuple(get_suppressed_tokens(tok, [-1]))
        return cached
