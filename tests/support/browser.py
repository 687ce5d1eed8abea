"""Helpers for the browser tests: Chromium and its flags, a spoken WAV for its fake microphone."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.support.paths import ARTIFACTS

CHROMIUM = os.environ.get("PARLEY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes renderers
    # Sound may start without a click: the test cannot make a "real" user gesture for every context.
    "--autoplay-policy=no-user-gesture-required",
    # A microphone without a device or a permission prompt: getUserMedia reads the WAV.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def fake_mic_flag(wav: Path) -> str:
    """Chromium reads this WAV as the microphone; ``%noloop`` plays it once, then silence."""
    return f"--use-file-for-fake-audio-capture={wav}%noloop"


def _synthesize(text: str) -> tuple[np.ndarray, int]:
    """Speech for ``text`` from the project's TTS (Piper, else espeak-ng), or the espeak-ng CLI."""
    try:
        from speech.engines.tts_espeak import EspeakTTS
        from speech.engines.tts_piper import PiperTTS

        for make in (PiperTTS, EspeakTTS):
            try:
                engine = make()
                pcm = np.concatenate(list(engine.synthesize(text, "en")))
                return pcm.astype(np.int16), int(engine.sample_rate)
            except Exception:  # an optional engine may be missing here: try the next
                continue
    except ImportError:
        pass
    out = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
    wav_path = ARTIFACTS / ".espeak.wav"
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    wav_path.write_bytes(out)
    with wave.open(str(wav_path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def write_speech_wav(path: Path, text: str, lead_s: float = 0.6, tail_s: float = 1.5) -> Path:
    """A mono 16-bit WAV: silence, ``text`` spoken, silence (so the end of the turn is detected)."""
    pcm, rate = _synthesize(text)
    audio = np.concatenate([np.zeros(int(lead_s * rate), np.int16), pcm, np.zeros(int(tail_s * rate), np.int16)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.astype("<i2").tobytes())
    return path


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> None:
    """Poll ``predicate()`` until it is true (for checks outside the page)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
