"""Sends one reply's audio at the pace it plays, and knows how much of it the user heard.

Audio goes out at real time plus a small lead, so the client's buffer stays short
and an interruption stops the sound within a frame or two. Because the server
knows what it sent and when, it can tell which words were heard: only those go
into the conversation history after a barge-in.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from speech.protocol import ResponseAudioEnd, ResponseAudioStart
from speech.text import join_pieces
from speech.voice import trace
from speech.voice.link import ClientLink

FRAME_MS = 40
@dataclass
class SpokenPiece:
    """A piece of the reply text and the audio samples made for it."""

    text: str
    samples: int = 0
    filler: bool = False
    """Said while waiting (e.g. "let me look that up"); not part of the answer."""


@dataclass
class Playout:
    """The audio of one turn: queued by synthesis, sent paced by :meth:`run`."""

    turn_id: str
    sample_rate: int
    link: ClientLink
    lead_s: float = 0.3
    pieces: list[SpokenPiece] = field(default_factory=list)
    queue: asyncio.Queue[tuple[int, np.ndarray] | None] = field(default_factory=asyncio.Queue)
    started_at: float | None = None
    """Wall time (perf_counter) of the first audio byte sent."""
    sent_samples: int = 0
    _paused_at: float | None = None
    _unpaused: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        """Whether sending is paused (see :meth:`pause`)."""
        return self._paused_at is not None

    def pause(self) -> None:
        """Stop sending frames (speech may be starting); the frame in flight is the last one."""
        if self._paused_at is None:
            self._paused_at = time.perf_counter()
            self._unpaused.clear()

    def resume(self) -> None:
        """Go on sending where it stopped, paced as if the pause had not happened."""
        if self._paused_at is None:
            return
        if self.started_at is not None:
            # The client played what it had, then nothing: shift the clock so pacing neither bursts nor
            # counts the pause as heard audio.
            played_before = min(self.sent_samples / self.sample_rate, self._paused_at - self.started_at)
            self.started_at = time.perf_counter() - played_before
        self._paused_at = None
        self._unpaused.set()

    def add_piece(self, text: str, filler: bool = False) -> int:
        """Register a piece of text about to be synthesized; returns its index."""
        self.pieces.append(SpokenPiece(text, filler=filler))
        return len(self.pieces) - 1

    def feed(self, piece: int, pcm: np.ndarray) -> None:
        """Queue synthesized int16 samples of piece ``piece``."""
        self.queue.put_nowait((piece, pcm))

    def finish(self) -> None:
        """No more audio for this turn."""
        self.queue.put_nowait(None)

    async def run(self) -> None:
        """Send ``response.audio.start``, the frames (paced), then ``response.audio.end``."""
        frame = self.sample_rate * FRAME_MS // 1000
        announced = False
        while (item := await self.queue.get()) is not None:
            piece, pcm = item
            if not announced:
                await self.link.send_event(ResponseAudioStart(self.turn_id, self.sample_rate))
                announced = True
            for start in range(0, len(pcm), frame):
                part = pcm[start : start + frame]
                if self._paused_at is not None:
                    await self._unpaused.wait()
                if self.started_at is None:
                    self.started_at = time.perf_counter()
                    trace.mark("first_byte", self.started_at, turn=self.turn_id)
                ahead = self.sent_samples / self.sample_rate - (time.perf_counter() - self.started_at)
                if ahead > self.lead_s:
                    await asyncio.sleep(ahead - self.lead_s)
                await self.link.send_audio(part.astype("<i2", copy=False).tobytes())
                self.sent_samples += len(part)
                self.pieces[piece].samples += len(part)
        if announced:
            await self.link.send_event(ResponseAudioEnd(self.turn_id))

    def heard_seconds(self) -> float:
        """How much audio the client can have played by now."""
        if self.started_at is None:
            return 0.0
        # While paused the client goes on playing what it holds (up to lead_s): capped by what was sent.
        return min(self.sent_samples / self.sample_rate, time.perf_counter() - self.started_at)

    def heard_text(self, played_s: float | None = None) -> str:
        """The answer text the user heard so far (fillers left out; a cut piece is cut by proportion).

        ``played_s``: the client says it played only this much (a Realtime client's truncate).
        """
        heard = self.heard_seconds() if played_s is None else min(self.heard_seconds(), max(0.0, played_s))
        left = int(heard * self.sample_rate)
        words: list[str] = []
        for piece in self.pieces:
            if left <= 0:
                break
            take = piece.text if piece.samples <= left else piece.text[: int(len(piece.text) * left / piece.samples)]
            left -= piece.samples
            if not piece.filler:
                words.append(take.strip())
        return join_pieces(words)
