"""CosyVoice zero-shot voice cloning (optional), as CleanS2S uses it.

``--tts_model_name DIR`` is a CosyVoice model folder; ``--ref_dir DIR`` holds
``ref.json`` listing reference recordings and their transcripts::

    [{"wav": "alice.wav", "text": "这是参考音频的文字。"}]

(a mapping ``{"alice.wav": "text"}`` is accepted too). The reference is loaded once
when the engine is built, not per sentence. CosyVoice is not on PyPI: it is imported
lazily, and a clear :class:`EngineUnavailableError` says how to get it.
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
class CosyVoiceSettings:
    """CosyVoice settings."""

    tts_model_name: str = field(default="", metadata={"help": "CosyVoice model folder."})
    ref_dir: str = field(default="", metadata={"help": "Folder with ref.json and the reference wavs."})
    ref_index: int = field(default=0, metadata={"help": "Which entry of ref.json to clone."})


@dataclass(frozen=True)
class Reference:
    """One reference recording and what is said in it."""

    wav: Path
    text: str


def load_references(ref_dir: str | Path) -> list[Reference]:
    """Read ``ref.json`` (a list of {"wav", "text"} or a {wav: text} mapping); paths are relative to the folder."""
    folder = Path(ref_dir)
    index = folder / "ref.json"
    if not index.is_file():
        raise EngineUnavailableError(f"--ref_dir {folder}: no ref.json there")
    data = json.loads(index.read_text(encoding="utf-8"))
    items = data.items() if isinstance(data, dict) else ((d.get("wav"), d.get("text")) for d in data)
    refs = [Reference(folder / str(wav), str(text)) for wav, text in items if wav and text]
    if not refs:
        raise EngineUnavailableError(f"{index}: lists no reference (wav + text)")
    missing = [r.wav.name for r in refs if not r.wav.is_file()]
    if missing:
        raise EngineUnavailableError(f"{index}: missing reference wavs: {', '.join(missing)}")
    return refs


def _import_cosyvoice() -> tuple[Any, Any]:
    try:
        from cosyvoice.cli.cosyvoice import CosyVoice
        from cosyvoice.utils.file_utils import load_wav
    except ImportError as exc:
        raise EngineUnavailableError(
            "CosyVoice is not installed (it is not on PyPI): clone FunAudioLLM/CosyVoice, install its "
            "requirements, put it on PYTHONPATH, and pass --tts_model_name and --ref_dir; or use --tts auto"
        ) from exc
    return CosyVoice, load_wav


class CosyVoiceTTS:
    """Streaming zero-shot CosyVoice synthesis in the reference speaker's voice.

    Thread-safe: one synthesis at a time (a lock), the model is shared.
    """

    name = "cosyvoice"

    def __init__(self, args: CosyVoiceSettings) -> None:
        if not args.tts_model_name or not args.ref_dir:
            raise EngineUnavailableError("--tts cosyvoice needs --tts_model_name DIR and --ref_dir DIR")
        refs = load_references(args.ref_dir)  # checked before the heavy import, so a bad folder fails fast
        cosyvoice_cls, load_wav = _import_cosyvoice()
        if not Path(args.tts_model_name).is_dir():
            raise EngineUnavailableError(f"--tts_model_name {args.tts_model_name}: no such folder")
        self.model = cosyvoice_cls(args.tts_model_name)
        self.sample_rate = int(getattr(self.model, "sample_rate", 22050))
        ref = refs[min(args.ref_index, len(refs) - 1)]
        self.reference = ref
        self._prompt_speech = load_wav(str(ref.wav), 16000)  # loaded once per engine, not per sentence
        self._lock = threading.Lock()

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Yield int16 chunks as CosyVoice streams them."""
        text = text.strip()
        if not text:
            return
        gen = self.model.inference_zero_shot(text, self.reference.text, self._prompt_speech, stream=True)
        while True:
            with self._lock:  # per chunk, so a slow listener does not hold the model between chunks
                out = next(gen, None)
            if out is None:
                return
            speech = out["tts_speech"]
            audio = speech.numpy() if hasattr(speech, "numpy") else np.asarray(speech)
            yield (np.clip(audio.reshape(-1), -1.0, 1.0) * 32767).astype(np.int16)
