"""The one seam between a voice session and its transport: what a session receives and sends.

A :class:`~speech.voice.session.VoiceSession` knows no socket. Every transport gives it a
:class:`ClientLink`: ``/ws`` (speech/transport/ws_link.py), the CleanS2S socket pair
(speech/transport/cleans2s/bridge.py), and any other front end. Input arrives typed (PCM audio or
a client message of speech/protocol.py); output leaves typed (server events, PCM audio), and each
link writes them in its own wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from speech.protocol import ClientMessage, ServerEvent


class LinkClosed(Exception):
    """The client has gone: the session ends."""


@dataclass(frozen=True)
class AudioIn:
    """16-bit little-endian mono PCM from the client, at the session's declared sample rate."""

    pcm: bytes


ClientInput = AudioIn | ClientMessage


class ClientLink(Protocol):
    """A session's client, as the session sees it.

    ``receive`` raises :class:`~speech.protocol.ProtocolError` for input it cannot use (the session
    answers with an ``error`` event and goes on) and :class:`LinkClosed` once the client is gone.
    Sending to a client that has gone is not an error: the next ``receive`` ends the session.
    """

    async def receive(self) -> ClientInput:
        """The client's next audio frame or message."""

    async def send_event(self, event: ServerEvent) -> None:
        """Send one typed server event."""

    async def send_audio(self, pcm: bytes) -> None:
        """Send reply audio: int16 mono PCM at the session's output rate."""

    async def close(self, code: int, reason: str) -> None:
        """Close the link with a close code and reason."""
