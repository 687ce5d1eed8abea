"""Fakes of the speech engines that subclass the real interfaces, for tests that are not about a model.

Only the models are faked; everything Parley does with them stays real:

* :class:`FakeVAD` makes the real :class:`~speech.engines.vad.VADStream` (Parley's own
  turn-taking state machine), scored by loudness instead of Silero;
* :class:`FakeASR` "hears" tone speech made by :meth:`FakeASR.speak`: every phrase of the
  script gets its own pitch and a length that follows the text, and a decode names the
  phrases whose tones are in the audio it is given. So a decode of half an utterance (a
  speculative decode at a pause) hears only the first half, whatever order the session
  decodes in, and the same words always give the same transcript;
* :class:`FakeTTS` yields int16 audio whose length follows the text, so playout pacing
  and what a barge-in counts as heard stay meaningful;
* :func:`fake_engines` puts them together as the :class:`SpeechEngines` a server takes.

Nothing here loads a model; a server on fake engines starts in well under a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import fields

import numpy as np

from agent.language import has_han
from speech.engines.base import ASR, OUTPUT_SAMPLE_RATE, TTS, VAD, Transcript
from speech.engines.factory import EngineSettings, SpeechEngines
from speech.engines.vad import FRAME_SAMPLES, SAMPLE_RATE, VADSettings, VADStream

SPEECH_DBFS = -35.0
"""Loudness above which a frame counts as speech (for the fake VAD and the fake ASR alike)."""


def energy_scorer(threshold_dbfs: float = SPEECH_DBFS) -> Callable[[np.ndarray], float]:
    """A crude loudness scorer for tests of the state machine (not for production)."""

    def score(frame: np.ndarray) -> float:
        return 1.0 if _dbfs(frame) > threshold_dbfs else 0.0

    return score


def _dbfs(frame: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.asarray(frame, dtype=np.float64) ** 2)) + 1e-12)
    return 20 * float(np.log10(rms))


class FakeVAD(VAD):
    """The real per-session :class:`VADStream`, scored by loudness instead of the Silero model."""

    def __init__(self, args: VADSettings | None = None, threshold_dbfs: float = SPEECH_DBFS) -> None:
        self.args = args or VADSettings()
        self.threshold_dbfs = threshold_dbfs
        self._lock = threading.Lock()
        self.open_streams = 0
        """Streams made and not closed yet: a session that ends must close its stream."""

    def new_stream(self) -> VADStream:
        """A fresh detector for one session."""
        with self._lock:
            self.open_streams += 1
        return VADStream(energy_scorer(self.threshold_dbfs), self.args, on_close=self._closed)

    def _closed(self) -> None:
        with self._lock:
            self.open_streams -= 1


TONE_LEVEL = 0.3
"""Amplitude of tone speech (about -13 dBFS: well above :data:`SPEECH_DBFS`)."""
SECONDS_PER_CHAR = 0.06
"""Length of tone speech and of fake synthesized audio per character (about a speaking pace)."""
MIN_PHRASE_S = 0.4
_FIRST_PITCH_HZ = 300.0
_PITCH_STEP_HZ = 40.0
_MAX_PITCH_HZ = 3900.0
_MIN_RUN_S = 0.1
"""Voiced stretches shorter than this are not words (a click; a cut right at a pause)."""
_BRIDGED_GAP_S = 0.1


class FakeASR(ASR):
    """A recognizer that hears the phrases of its script in tone speech made by :meth:`speak`.

    ``transcribe`` finds each voiced stretch of the audio, takes its pitch, and answers
    the phrases of those pitches joined by spaces; sound that matches no phrase (noise,
    or real speech) is not heard, as Whisper writes nothing for a cough. ``calls`` counts
    decodes, ``decoded`` keeps the audio of each; ``fail_with`` makes every decode raise it
    (an engine failure).
    """

    name = "fake-asr"

    def __init__(self, script: tuple[str, ...] | list[str] = ()) -> None:
        self._lock = threading.Lock()
        self._pitches: dict[str, float] = {}
        self.calls = 0
        self.decoded: list[np.ndarray] = []
        self.fail_with: Exception | None = None
        for text in script:
            self._pitch(text)

    def _pitch(self, text: str) -> float:
        with self._lock:
            if text not in self._pitches:
                pitch = _FIRST_PITCH_HZ + _PITCH_STEP_HZ * len(self._pitches)
                if pitch > _MAX_PITCH_HZ:
                    raise ValueError("too many phrases for one FakeASR: use a new one")
                self._pitches[text] = pitch
            return self._pitches[text]

    def speak(self, text: str, seconds: float | None = None) -> np.ndarray:
        """Tone speech for ``text`` (16 kHz int16), as long as saying it would take unless ``seconds`` is given."""
        pitch = self._pitch(text)
        duration = seconds if seconds is not None else max(MIN_PHRASE_S, SECONDS_PER_CHAR * len(text))
        t = np.arange(round(duration * SAMPLE_RATE)) / SAMPLE_RATE
        return (TONE_LEVEL * 32767 * np.sin(2 * np.pi * pitch * t)).astype(np.int16)

    def transcribe(self, audio: np.ndarray, language: str | None = None, **_: object) -> Transcript:
        """The script's phrases heard in ``audio`` (16 kHz float32), in order."""
        with self._lock:
            self.calls += 1
            self.decoded.append(np.array(audio, dtype=np.float32))
            failure = self.fail_with
            phrases = {round(pitch): text for text, pitch in self._pitches.items()}
        if failure is not None:
            raise failure
        heard = []
        for run in _voiced_runs(np.asarray(audio, dtype=np.float32)):
            spectrum = np.abs(np.fft.rfft(run * np.hanning(run.size)))
            peak = float(np.fft.rfftfreq(run.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])
            near = min(phrases, key=lambda p: abs(p - peak), default=None)
            if near is not None and abs(near - peak) < _PITCH_STEP_HZ / 3:
                heard.append(phrases[near])
        text = " ".join(heard)
        found = ("zh" if has_han(text) else "en") if text else "en"
        return Transcript(text=text, language=language or found, duration_s=audio.size / SAMPLE_RATE)


def _voiced_runs(audio: np.ndarray) -> list[np.ndarray]:
    """The stretches of ``audio`` louder than :data:`SPEECH_DBFS`, short gaps bridged, clicks dropped."""
    n = audio.size // FRAME_SAMPLES
    loud = [_dbfs(audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]) > SPEECH_DBFS for i in range(n)]
    frame_s = FRAME_SAMPLES / SAMPLE_RATE
    runs: list[tuple[int, int]] = []
    for i, is_loud in enumerate(loud):
        if not is_loud:
            continue
        if runs and (i - runs[-1][1]) * frame_s <= _BRIDGED_GAP_S:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return [audio[a * FRAME_SAMPLES:b * FRAME_SAMPLES] for a, b in runs if (b - a) * frame_s >= _MIN_RUN_S]


class FakeTTS(TTS):
    """A synthesizer whose int16 audio lasts as long as saying the text would (:data:`SECONDS_PER_CHAR`).

    It yields one chunk per word, as a streaming engine does; ``texts`` records what it
    was asked to say; ``fail_on`` makes it raise for text containing that string.
    """

    name = "fake-tts"

    def __init__(self, sample_rate: int = OUTPUT_SAMPLE_RATE, seconds_per_char: float = SECONDS_PER_CHAR) -> None:
        self.sample_rate = sample_rate
        self.seconds_per_char = seconds_per_char
        self.texts: list[str] = []
        self.fail_on: str | None = None

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Quiet tone audio, one chunk per word (per character in Chinese)."""
        self.texts.append(text)
        if self.fail_on is not None and self.fail_on in text:
            raise RuntimeError(f"fake synthesis failure for {text!r}")
        pieces = list(text) if has_han(text) else text.split()
        for piece in pieces:
            samples = round(len(piece + " ") * self.seconds_per_char * self.sample_rate)
            t = np.arange(samples) / self.sample_rate
            yield (0.1 * 32767 * np.sin(2 * np.pi * 220.0 * t)).astype(np.int16)


def fake_engines(args: EngineSettings | None = None, *, asr: ASR | None = None, tts: TTS | None = None,
                 vad: VAD | None = None) -> SpeechEngines:
    """The :class:`SpeechEngines` a server takes, with fakes for every model (any one may be given instead).

    ``args`` are the speech flags (turn-taking settings, ``language``); the fake VAD follows them.
    """
    a = args or EngineSettings()
    vad_args = VADSettings(**{f.name: getattr(a, f.name) for f in fields(VADSettings)})
    synthesizer = tts or FakeTTS()
    return SpeechEngines(args=a, vad=vad or FakeVAD(vad_args), asr=asr or FakeASR(), tts=synthesizer,
                         output_sample_rate=synthesizer.sample_rate)
