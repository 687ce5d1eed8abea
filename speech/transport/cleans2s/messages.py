"""CleanS2S's wire format: parsing the browser's 9001 messages, and the audio encodings both ways."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from speech.protocol import ProtocolError, json_object

RATE = 16000
"""CleanS2S's audio rate, both ways."""


class CompatError(ProtocolError):
    """A 9001 message the bridge cannot use; answered with a placeholder carrying ``error``."""


@dataclass(frozen=True)
class Inbound:
    """One usable message from the browser."""

    kind: str
    """``audio`` or ``text``."""
    uid: str
    audio: np.ndarray | None = None
    text: str = ""
    is_playing: bool | None = None


def decode_float32(b64: str) -> np.ndarray:
    """Base64 of little-endian Float32 mono -> int16 samples (clipped to [-1, 1], scaled by 32767)."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise CompatError("bad_audio", "audio is not valid base64") from None
    if len(raw) % 4:
        raise CompatError("bad_audio", "Float32 audio needs a multiple of 4 bytes")
    samples = np.nan_to_num(np.frombuffer(raw, dtype="<f4"), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")


def quietest_cut(pcm: np.ndarray, low: int, high: int, frame: int = RATE // 100) -> int:
    """Where to end a clip between ``low`` and ``high`` samples: the middle of the quietest frame."""
    frames = max(1, (high - low) // frame)
    window = pcm[low: low + frames * frame].astype(np.float32)
    if window.size < frames * frame:
        return min(high, pcm.size)
    energy = np.square(window).reshape(frames, frame).mean(axis=1)
    return low + int(np.argmin(energy)) * frame + frame // 2


def encode_pcm16(pcm: np.ndarray) -> str:
    """int16 samples -> base64 of little-endian int16, as the front end plays it."""
    return base64.b64encode(np.asarray(pcm, dtype="<i2").tobytes()).decode("ascii")


def parse_inbound(raw: str | bytes, max_bytes: int | None = None) -> Inbound:
    """Parse a 9001 frame, or raise :class:`CompatError`.

    Lenient like CleanS2S: without a ``type``, a message with ``audio`` is audio and one with
    ``text`` is typed input.
    """
    if isinstance(raw, bytes):
        raise CompatError("bad_message", "CleanS2S messages are JSON text frames")
    try:
        obj = json_object(raw, max_bytes)
    except ProtocolError as exc:
        raise CompatError(exc.code, exc.message) from None
    kind = obj.get("type")
    if kind is None:
        kind = "audio_input" if "audio" in obj else "user_input" if "text" in obj else None
    if kind not in ("audio_input", "user_input"):
        raise CompatError("unknown_type", f"unknown message type: {str(kind)[:40]!r}")
    uid = obj.get("uid")
    if not isinstance(uid, str) or not uid:
        raise CompatError("bad_message", "'uid' is required")
    if kind == "user_input":
        text = obj.get("text")
        if not isinstance(text, str):
            raise CompatError("bad_message", "'text' must be a string")
        return Inbound("text", uid, text=text)
    audio = obj.get("audio")
    if not isinstance(audio, str):
        raise CompatError("bad_message", "'audio' must be a base64 string")
    playing = obj.get("is_playing")
    is_playing = {"true": True, "false": False}.get(playing) if isinstance(playing, str) else None
    return Inbound("audio", uid, audio=decode_float32(audio), is_playing=is_playing)
