"""PCM conversion and resampling, shared by the engines, the sessions and the transports.

Every stage of Parley moves 16-bit little-endian mono PCM; libsoxr does the resampling
(stateless for whole clips, streaming for a live socket so frame edges do not click).
"""

from __future__ import annotations

import numpy as np
import soxr


def pcm16_to_float(pcm: bytes | np.ndarray) -> np.ndarray:
    """16-bit little-endian PCM (bytes or int16 array) to float32 in [-1, 1)."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        pcm = np.frombuffer(pcm, dtype="<i2")
    if pcm.dtype == np.float32:
        return pcm
    return pcm.astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] to int16 (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def resample_pcm16(pcm: bytes | np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample 16-bit PCM with libsoxr (high quality), returning int16.

    Stateless: fine for whole clips. For a live stream cut into small frames use
    :class:`PcmResampler`, which keeps the filter state between frames (no clicks at
    frame edges).
    """
    if isinstance(pcm, bytes | bytearray | memoryview):
        pcm = np.frombuffer(pcm, dtype="<i2")
    pcm = np.asarray(pcm, dtype=np.int16)
    if from_rate == to_rate or pcm.size == 0:
        return pcm.copy()
    return soxr.resample(pcm, from_rate, to_rate, quality="HQ")


def resample_float(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample float32 audio with libsoxr."""
    if from_rate == to_rate or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio.astype(np.float32, copy=False), from_rate, to_rate, quality="HQ")


class PcmResampler:
    """Streaming int16 resampler for one session (keeps state across frames)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(
            from_rate, to_rate, 1, dtype="int16", quality="HQ")

    def process(self, pcm: bytes | np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next chunk; ``last=True`` flushes what the filter holds back."""
        if isinstance(pcm, bytes | bytearray | memoryview):
            pcm = np.frombuffer(pcm, dtype="<i2")
        pcm = np.asarray(pcm, dtype=np.int16)
        if self._stream is None:
            return pcm.copy()
        return self._stream.resample_chunk(pcm, last=last)

    def flush(self) -> np.ndarray:
        """What the filter still holds back of the input so far; the stream then starts afresh.

        For the end of one stretch of audio (a committed turn) when more audio may follow.
        """
        if self._stream is None:
            return np.zeros(0, np.int16)
        tail = self._stream.resample_chunk(np.zeros(0, np.int16), last=True)
        self._stream.clear()
        return tail

    def reset(self) -> None:
        """Drop what the filter holds back (discarded audio must not leak into what comes next)."""
        if self._stream is not None:
            self._stream.clear()
