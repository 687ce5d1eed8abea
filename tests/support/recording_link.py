"""A :class:`~speech.voice.link.ClientLink` that keeps what a session sends, for tests of the voice stages."""

from __future__ import annotations

import asyncio
import time

from speech.protocol import ServerEvent
from speech.voice.link import ClientInput, ClientLink, LinkClosed


class RecordingLink(ClientLink):
    """Records every event and audio frame (with the time it was sent); input comes from :meth:`feed`."""

    def __init__(self) -> None:
        self.events: list[ServerEvent] = []
        self.audio: list[tuple[float, bytes]] = []
        """(perf_counter when sent, PCM) of each audio frame."""
        self.closed: tuple[int, str] | None = None
        self._input: asyncio.Queue[ClientInput | None] = asyncio.Queue()

    def feed(self, item: ClientInput | None) -> None:
        """Queue client input; ``None`` means the client has gone."""
        self._input.put_nowait(item)

    async def receive(self) -> ClientInput:
        item = await self._input.get()
        if item is None:
            raise LinkClosed
        return item

    async def send_event(self, event: ServerEvent) -> None:
        self.events.append(event)

    async def send_audio(self, pcm: bytes) -> None:
        self.audio.append((time.perf_counter(), pcm))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
