"""When a pause ends the user's turn: from the words said, and optionally the smart-turn model.

The VAD confirms a turn after ``min_silence_ms`` of silence whatever was said. Once the
speculative transcript of the pause is known, the session asks :func:`end_silence_ms`
for this pause's own threshold:

* the sentence plainly ends (a question or exclamation mark, no trailing "and"/"so"/"because"/
  "然后"/"就是"..., and the smart-turn model, when loaded, agrees) -> ``early_silence_ms``;
* it plainly goes on (a trailing conjunction or filler, a trailing comma, or smart-turn
  says incomplete) -> ``late_silence_ms``;
* otherwise ``min_silence_ms`` as before.

Whisper puts a full stop after most fragments ("I would like to know."), so a full stop
only gets the ordinary silence; the trailing-word list catches the common dangling endings in
both languages, and the audio model catches the intonation of an unfinished phrase.
The reply itself stays held back until the turn is confirmed, so a wrong "complete"
costs at most a reply to half a sentence that the user then talks over (merged).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

SENTENCE_END = tuple(".?!。？！")
# Only these end a turn early. Whisper puts a full stop after fragments too ("I would like to know.",
# "Can you tell me."): answering those at the early silence replied to speakers who had only paused
# (bench.voice_latency: 2 of 10 premature at TTFT 0; tests/test_server_voice.py), so a full stop
# waits the ordinary --min_silence_ms. A question or exclamation mark is much rarer on a fragment.
EARLY_END = tuple("?!？！")
_TRAILING_EN = {
    "and", "so", "because", "but", "or", "then", "um", "uh", "er", "like", "the", "a", "an", "to", "of", "with",
    "for", "in", "on", "at", "is", "are", "was", "my", "your", "if", "that", "which", "when", "about", "from",
    "some", "than", "as", "also", "actually", "basically", "just", "maybe", "our", "their", "his", "her", "into",
}
_TRAILING_ZH = ("然后", "就是", "还有", "因为", "所以", "但是", "而且", "那个", "这个", "如果", "或者", "的话", "嗯",
                "呃", "和", "跟", "是", "的", "在", "想", "要", "我")
_WORD = re.compile(r"[a-zA-Z']+")


@dataclass(frozen=True)
class TurnEndArgs:
    """How long a pause must last to end the turn, depending on what was said."""

    turn_end: str = field(default="words", metadata={
        "help": "'words': shorten the end-of-turn silence after a plainly finished sentence, lengthen it after "
                "a trailing 'and'/'so'/'然后'; 'smart': also ask the smart-turn v3.2 model (pipecat-ai wheel); "
                "'fixed': always --min_silence_ms.", "choices": ("words", "smart", "fixed")})
    early_silence_ms: int = field(default=450, metadata={
        "help": "End-of-turn silence after a plainly finished sentence, in ms."})
    late_silence_ms: int = field(default=1600, metadata={
        "help": "End-of-turn silence after a plainly unfinished one, in ms."})


class TurnModel(Protocol):
    """Probability that the turn is complete, from the utterance audio (16 kHz float32)."""

    def __call__(self, audio: np.ndarray) -> float: ...


def ending_of(text: str) -> str:
    """'complete', 'incomplete' or 'unclear' from the transcript's last words."""
    t = text.strip().rstrip("\"'”’)")
    if not t:
        return "unclear"
    if t[-1] in ",，、;；:：-—…" or t.endswith("..."):
        return "incomplete"
    core = t.rstrip("".join(SENTENCE_END) + " ")
    words = _WORD.findall(core[-40:].lower())
    if (words and core[-1:].isascii() and words[-1] in _TRAILING_EN) or core.endswith(_TRAILING_ZH):
        return "incomplete"
    return "complete" if t[-1] in EARLY_END else "unclear"


def end_silence_ms(text: str, default_ms: int, args: TurnEndArgs, complete_prob: float | None = None) -> int:
    """The silence that should end this turn, given its transcript (and the model's probability, if any)."""
    if args.turn_end == "fixed":
        return default_ms
    ending = ending_of(text)
    if ending == "incomplete" or (complete_prob is not None and complete_prob < 0.2):
        return max(default_ms, args.late_silence_ms)
    if ending == "complete" and (complete_prob is None or complete_prob >= 0.5):
        return min(default_ms, args.early_silence_ms)
    return default_ms


class SmartTurn:
    """smart-turn v3.2 (ONNX, BSD-2-Clause, from the PyPI ``pipecat-ai`` wheel) on onnxruntime.

    The wheel is installed with ``--no-deps`` (requirements-speech.txt): only its model file and
    its numpy feature code are used, loaded by path so pipecat itself is never imported.
    """

    SECONDS = 8

    def __init__(self, threads: int = 1) -> None:
        import importlib.util

        import onnxruntime as ort

        from speech.tts import EngineUnavailableError

        spec = find_spec("pipecat")
        if spec is None or not spec.submodule_search_locations:
            raise EngineUnavailableError("--turn_end smart needs pipecat-ai: pip install --no-deps pipecat-ai==1.14.0")
        folder = Path(next(iter(spec.submodule_search_locations))) / "audio" / "turn" / "smart_turn"
        model = folder / "data" / "smart-turn-v3.2-cpu.onnx"
        feats = importlib.util.spec_from_file_location("parley_smart_turn_features", folder / "_whisper_features.py")
        if not model.is_file() or feats is None or feats.loader is None:
            raise EngineUnavailableError(f"smart-turn model missing under {folder}")
        module = importlib.util.module_from_spec(feats)
        feats.loader.exec_module(module)
        self._features = module.compute_whisper_log_mel_features
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), sess_options=options,
                                             providers=["CPUExecutionProvider"])

    def __call__(self, audio: np.ndarray) -> float:
        n = self.SECONDS * 16000
        audio = np.asarray(audio, dtype=np.float32)[-n:]
        if audio.size < n:  # the model wants 8 s, silence first
            audio = np.concatenate([np.zeros(n - audio.size, np.float32), audio])
        mel = self._features(audio, do_normalize=True)[None].astype(np.float32)
        return float(np.asarray(self._session.run(None, {"input_features": mel})[0]).reshape(-1)[0])
