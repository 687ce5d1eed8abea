"""A WebSocket client that follows docs/protocol.md, for tests and benchmarks.

It streams 16-bit PCM in real-time-sized frames (or faster), and records every
event with the time it arrived, so tests can check order and timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect


@dataclass
class Received:
    """One message from the server and when it arrived (perf_counter seconds)."""

    at: float
    event: dict[str, Any] | None
    audio: bytes | None = None


@dataclass
class SpokenTurn:
    """A turn :meth:`VoiceClient.speak_turn` streamed, and its answer."""

    start: float
    """perf_counter when the first frame left."""
    last_word: float
    """perf_counter when the speech's last sample was due (the silence after it not counted)."""
    done: dict[str, Any]
    """The turn's ``response.done``."""


@dataclass
class VoiceClient:
    """A connected session."""

    ws: ClientConnection
    received: list[Received] = field(default_factory=list)
    ready: dict[str, Any] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls, url: str, user_id: str, sample_rate: int = 16000, audio_output: bool = True,
                   token: str | None = None, headers: dict[str, str] | None = None) -> VoiceClient:
        ws = await connect(url, additional_headers=headers, max_size=None)
        client = cls(ws)
        start: dict[str, Any] = {"type": "session.start", "user_id": user_id, "sample_rate": sample_rate,
                                 "audio_output": audio_output}
        if token is not None:
            start["token"] = token
        await ws.send(json.dumps(start))
        client.ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        client._reader = asyncio.get_running_loop().create_task(client._read())
        return client

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    self.received.append(Received(now, None, message))
                else:
                    self.received.append(Received(now, json.loads(message)))
                self._changed.set()
        self._changed.set()

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def say_text(self, text: str) -> None:
        await self.send_json({"type": "text", "text": text})

    async def stream_pcm(self, pcm: np.ndarray, sample_rate: int = 16000, frame_ms: int = 20,
                         speed: float = 1.0) -> float:
        """Send int16 samples in frames, paced at ``speed`` x real time. Returns the time the last frame left."""
        frame = sample_rate * frame_ms // 1000
        start = time.perf_counter()
        for i, offset in enumerate(range(0, len(pcm), frame)):
            due = start + i * frame_ms / 1000 / speed
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.ws.send(pcm[offset : offset + frame].astype("<i2").tobytes())
        return time.perf_counter()

    async def speak_turn(self, speech: np.ndarray, before_s: float = 0.4, after_s: float = 2.0,
                         timeout: float = 60.0) -> SpokenTurn:  # noqa: ASYNC109 - as wait_for's
        """Stream 16 kHz ``speech`` at real time with silence around it, then wait for the next ``response.done``.

        ``before_s`` of silence goes ahead (the VAD hears where speech starts), ``after_s`` after (the
        turn can end in it).
        """
        answered = len(self.events("response.done"))
        start = time.perf_counter()
        await self.stream_pcm(np.concatenate([silence(before_s), speech, silence(after_s)]))
        last_word = start + before_s + speech.size / 16000
        done = await self.wait_for("response.done", answered + 1, timeout=timeout)
        return SpokenTurn(start, last_word, done)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.event for r in self.received if r.event is not None and (kind is None or r.event["type"] == kind)]

    def audio_bytes(self) -> int:
        return sum(len(r.audio) for r in self.received if r.audio is not None)

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109 - a test helper's deadline, not a cancellation scope
        """Wait until ``count`` events of ``kind`` have arrived; return the last."""
        deadline = time.perf_counter() + timeout
        while True:
            found = self.events(kind)
            if len(found) >= count:
                return found[count - 1]
            left = deadline - time.perf_counter()
            if left <= 0:
                seen = [e["type"] for e in self.events()]
                raise TimeoutError(f"no {kind} #{count} within {timeout} s; got {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def first_time(self, kind: str, after: float = 0.0) -> float | None:
        for r in self.received:
            if r.event is not None and r.event["type"] == kind and r.at >= after:
                return r.at
        return None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def silence(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * sample_rate), dtype=np.int16)


async def type_until_stopped(url: str, user_id: str, stop: asyncio.Event, done_turns: list[int] | None = None) -> None:
    """Typed turns, back to back, until ``stop`` or the server dies (for crash tests)."""
    client = await VoiceClient.open(url, user_id, audio_output=False)
    try:
        n = 0
        while not stop.is_set():
            n += 1
            await client.say_text(f"note {n} from {user_id}: the number {n * 7} matters")
            await client.wait_for("response.done", n, timeout=20)
            if done_turns is not None:
                done_turns.append(n)
    except Exception:  # the server was killed under us
        pass
    finally:
        await client.close()
