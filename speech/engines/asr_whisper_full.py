"""The 30 s window path: faster-whisper's own ``transcribe`` (``--whisper_window full``).

Kept as the reference the short window is measured against (bench/asr_window.py), for
word timestamps (the incremental transcriber commits at word boundaries), and for
audio longer than 30 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.language import has_han
from speech.engines.asr_guards import is_degenerate, join_segments, strip_repeats, to_simplified
from speech.engines.base import Transcript
from speech.engines.whisper_model import SAMPLE_RATE, ZH_PROMPT

if TYPE_CHECKING:
    from speech.engines.asr_whisper import WhisperASR


def detect_language_full(asr: WhisperASR, audio: np.ndarray) -> tuple[str, float]:
    """faster-whisper's language detection (its own 30 s encoder pass), among ``asr_languages``."""
    _, _, probs = asr.model.detect_language(audio[: 30 * SAMPLE_RATE])
    allowed = [(p, lang) for lang, p in probs if lang in asr.languages]
    if not allowed:
        return asr.languages[0], 0.0
    p, lang = max(allowed)
    return lang, p / (sum(x for x, _ in allowed) or 1.0)


def transcribe_full(asr: WhisperASR, audio: np.ndarray, language: str | None, prompt: str | None,
                    offset_s: float, word_timestamps: bool) -> Transcript:
    """Transcribe through faster-whisper (30 s window); same guards and output as the short path."""
    duration = audio.size / SAMPLE_RATE
    prob = 1.0
    # Automatic language: let the decoder detect it per segment from the same encoder pass
    # (``multilingual=True``): a separate detect_language() would run the 30 s encoder a second time.
    detect_in_decoder = asr.multilingual and (not language or language == "auto")
    if detect_in_decoder:
        language, prob = asr.languages[0], 0.0
    if not asr.multilingual:
        language = "en"
    initial = ZH_PROMPT if language == "zh" and not detect_in_decoder else None
    if prompt:
        initial = f"{initial or ''}{prompt}"[-200:]
    max_tokens = int(20 + 12 * duration) if language != "zh" and not detect_in_decoder else int(20 + 16 * duration)
    with asr._lock:
        segments, _info = asr.model.transcribe(
            audio, language=language, task="transcribe", beam_size=asr.args.whisper_beam_size,
            initial_prompt=initial, condition_on_previous_text=False, temperature=0.0,
            compression_ratio_threshold=2.4, log_prob_threshold=-1.0, no_speech_threshold=0.6,
            vad_filter=False, without_timestamps=False, word_timestamps=word_timestamps,
            max_new_tokens=min(max_tokens, 440), multilingual=detect_in_decoder)
        segs = []
        words: list[tuple[float, float, str]] = []
        for s in segments:  # the generator decodes lazily: consume it under the lock
            asr.full_passes += 1
            if s.no_speech_prob > 0.6 and s.avg_logprob < -1.0:
                continue  # probably silence or noise
            seg_text = s.text.strip()
            if not seg_text or is_degenerate(seg_text):
                continue
            segs.append((s.start + offset_s, s.end + offset_s, strip_repeats(seg_text)))
            words.extend((w.start + offset_s, w.end + offset_s, w.word) for w in (s.words or ()))
    if detect_in_decoder:
        language = "zh" if any(has_han(t) for _, _, t in segs) else "en"
        prob = 1.0
    assert language is not None
    if language == "zh" and asr.args.zh_simplify == "zhconv":
        segs = [(a, b, to_simplified(t)) for a, b, t in segs]
        words = [(a, b, to_simplified(t)) for a, b, t in words]
    text = join_segments([t for _, _, t in segs])
    if is_degenerate(text):
        text, segs, words = "", [], []
    return Transcript(text, language, prob, duration, tuple(segs), tuple(words))
