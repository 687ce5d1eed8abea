"""FunASR Paraformer from local folders (optional), as CleanS2S loads it.

``--asr funasr --stt_model_name DIR``: ``DIR`` holds a FunASR model (``config.yaml``,
``model.pt``, ``tokens.json``/``tokens.txt``, optionally ``am.mvn``). Sibling folders
whose names contain ``vad`` or ``punc`` (e.g. ``.../fsmn-vad``, ``.../ct-punc``) are
loaded as the VAD and punctuation models. Only local folders are accepted: a name
that is not a folder is refused here, because FunASR would try to download it.

Install: ``pip install -r requirements-funasr.txt`` (with the CPU torch already in place).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.language import has_han
from speech.engines.base import EngineUnavailableError, Transcript
from speech.engines.whisper_model import SAMPLE_RATE


@dataclass(frozen=True)
class FunASRSettings:
    """FunASR settings."""

    stt_model_name: str = field(default="", metadata={"help": "Folder of the FunASR (Paraformer) model."})
    vad_model: str = field(default="", metadata={"help": "VAD model folder; empty: a sibling folder named *vad*."})
    punc_model: str = field(default="", metadata={
        "help": "Punctuation model folder; empty: a sibling folder named *punc*."})


def _sibling(model_dir: Path, key: str) -> str | None:
    """A folder next to ``model_dir`` whose name contains ``key`` and that holds a model config."""
    for candidate in sorted(model_dir.parent.iterdir()):
        if candidate != model_dir and candidate.is_dir() and key in candidate.name.lower() \
                and ((candidate / "config.yaml").is_file() or (candidate / "configuration.json").is_file()):
            return str(candidate)
    return None


def _local_model(path: str, what: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir() or not ((folder / "config.yaml").is_file() or (folder / "configuration.json").is_file()):
        raise EngineUnavailableError(f"{what} {path!r}: not a local FunASR model folder (config.yaml missing); "
                                     "FunASR models are not downloaded at run time")
    return folder


class FunASR:
    """Paraformer (+ optional VAD and punctuation) through ``funasr.AutoModel``, on CPU.

    Thread-safe: calls are serialized with a lock (torch modules are not reentrant-safe
    with FunASR's internal caches).
    """

    name = "funasr"

    def __init__(self, args: FunASRSettings) -> None:
        if not args.stt_model_name:
            raise EngineUnavailableError("--asr funasr needs --stt_model_name DIR (a local Paraformer folder)")
        model_dir = _local_model(args.stt_model_name, "--stt_model_name")
        try:
            from funasr import AutoModel
        except ImportError as exc:
            raise EngineUnavailableError("funasr is not installed: pip install -r requirements-funasr.txt "
                                         "(after the CPU torch)") from exc
        kwargs: dict[str, Any] = {"model": str(model_dir), "device": "cpu", "disable_update": True,
                                  "disable_pbar": True, "log_level": "ERROR"}
        vad = args.vad_model or _sibling(model_dir, "vad")
        punc = args.punc_model or _sibling(model_dir, "punc")
        if vad:
            kwargs["vad_model"] = str(_local_model(vad, "VAD model"))
            kwargs["vad_kwargs"] = {"max_single_segment_time": 30000}
        if punc:
            kwargs["punc_model"] = str(_local_model(punc, "punctuation model"))
        os.environ.setdefault("MODELSCOPE_OFFLINE", "1")
        self.model = AutoModel(**kwargs)
        self.model_dir = model_dir
        self.has_vad, self.has_punc = bool(vad), bool(punc)
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        """Transcribe float32 16 kHz audio (Paraformer-zh handles Mandarin and some English)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < SAMPLE_RATE // 10:
            return Transcript("", language or "zh", 0.0, audio.size / SAMPLE_RATE)
        with self._lock:
            result = self.model.generate(input=audio, batch_size_s=300, disable_pbar=True)
        text = "".join(str(r.get("text", "")) for r in result).strip()
        lang = language if language in ("zh", "en") else ("zh" if has_han(text) or not text else "en")
        return Transcript(text, lang, 1.0, audio.size / SAMPLE_RATE)
