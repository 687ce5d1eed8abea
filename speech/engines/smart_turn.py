"""The smart-turn v3.2 end-of-turn model (``--turn_end smart``): is the speaker done, from the audio.

Also the turn-end settings (``--turn_end``, ``--early_silence_ms``, ``--late_silence_ms``,
``--doubt_silence_ms``): the factory reads them to load this model, and :mod:`speech.voice.turn_end` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from speech.engines.base import EngineUnavailableError


@dataclass(frozen=True)
class TurnEndSettings:
    """How long a pause must last to end the turn, depending on what was said."""

    turn_end: str = field(default="words", metadata={
        "help": "'words': shorten the end-of-turn silence after a plainly finished sentence, lengthen it after "
                "a trailing 'and'/'so'/'然后'; 'smart': also ask the smart-turn v3.2 model (pipecat-ai wheel); "
                "'fixed': always --min_silence_ms.", "choices": ("words", "smart", "fixed")})
    early_silence_ms: int = field(default=450, metadata={
        "help": "End-of-turn silence after a plainly finished sentence, in ms."})
    late_silence_ms: int = field(default=1600, metadata={
        "help": "End-of-turn silence after a plainly unfinished one, in ms."})
    doubt_silence_ms: int = field(default=1300, metadata={
        "help": "End-of-turn silence after a doubtful full stop (a question's opening without its question "
                "mark, a trailing 'know'/'tell me'/'知道'), in ms."})
    pause_margin_ms: int = field(default=400, metadata={
        "help": "A turn that does not plainly end waits at least the longest pause the speaker went on from in "
                "their last 3 utterances plus this, up to --pause_habit_max_ms (negative: off)."})
    pause_habit_max_ms: int = field(default=1300, metadata={
        "help": "The longest wait the speaker's pause habit can give a turn whose words do not say it goes on, "
                "in ms: a silence this long ends the turn (bench.turn_end: the voice sets pause 0.4-1.1 s)."})
    pause_habit_prior_ms: int = field(default=800, metadata={
        "help": "The longest pause assumed of a new speaker until their own first utterances are done, in ms: "
                "a first pause of 1.06 s after a full stop was answered at 800 ms (bench.turn_end, Mandarin "
                "alone); 0: none."})


class SmartTurn:
    """smart-turn v3.2 (ONNX, BSD-2-Clause, from the PyPI ``pipecat-ai`` wheel) on onnxruntime.

    The wheel is installed with ``--no-deps`` (requirements-speech.txt): only its model file and
    its numpy feature code are used, loaded by path so pipecat itself is never imported.
    """

    SECONDS = 8

    def __init__(self, threads: int = 1) -> None:
        import importlib.util

        import onnxruntime as ort

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
        """The probability, 0 to 1, that the turn is complete, from the last 8 s of ``audio``."""
        n = self.SECONDS * 16000
        audio = np.asarray(audio, dtype=np.float32)[-n:]
        if audio.size < n:  # the model wants 8 s, silence first
            audio = np.concatenate([np.zeros(n - audio.size, np.float32), audio])
        mel = self._features(audio, do_normalize=True)[None].astype(np.float32)
        return float(np.asarray(self._session.run(None, {"input_features": mel})[0]).reshape(-1)[0])
