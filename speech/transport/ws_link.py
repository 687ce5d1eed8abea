"""The ``/ws`` socket as a session's :class:`~speech.voice.link.ClientLink`: JSON text frames, binary PCM."""

from __future__ import annotations

import contextlib

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from speech.protocol import ProtocolError, ServerEvent, SessionStart, parse_client_message
from speech.voice.link import AudioIn, ClientInput, LinkClosed


class WebSocketLink:
    """One ``/ws`` connection (docs/protocol.md); frames over ``max_frame_bytes`` are refused unread."""

    def __init__(self, ws: ServerConnection, max_frame_bytes: int) -> None:
        self.ws = ws
        self.max_frame_bytes = max_frame_bytes

    async def _recv(self) -> str | bytes:
        try:
            return await self.ws.recv()
        except ConnectionClosed:
            raise LinkClosed from None

    async def first_message(self) -> SessionStart:
        """The ``session.start`` that must open the connection, or :class:`ProtocolError`."""
        raw = await self._recv()
        if isinstance(raw, bytes):
            raise ProtocolError("not_started", "send session.start before audio")
        msg = parse_client_message(raw, self.max_frame_bytes)
        if not isinstance(msg, SessionStart):
            raise ProtocolError("not_started", "the first message must be session.start")
        return msg

    async def receive(self) -> ClientInput:
        """The next frame: audio, or a parsed client message."""
        raw = await self._recv()
        if isinstance(raw, bytes):
            if len(raw) > self.max_frame_bytes:
                raise ProtocolError("message_too_large", f"audio frame over {self.max_frame_bytes} bytes")
            return AudioIn(raw)
        return parse_client_message(raw, self.max_frame_bytes)

    async def send_event(self, event: ServerEvent) -> None:
        """Send one event as a JSON text frame (quietly nothing once the client has gone)."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(event.to_json())

    async def send_audio(self, pcm: bytes) -> None:
        """Send reply audio as one binary frame."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(pcm)

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code``."""
        await self.ws.close(code, reason)
