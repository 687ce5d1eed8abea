"""A client of Parley's OpenAI Realtime endpoint (``/v1/realtime``): the stock ``openai`` SDK, and steps tests repeat.

Nothing here stands in for Parley: the SDK connects to a real server (tests/support/in_process.py); these
are only the client's moves, written once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

TOKEN = "realtime-test-token"
"""The access token the realtime tests start their server with (``running_server(..., auth_token=TOKEN)``)."""


def client(srv: Any) -> AsyncOpenAI:
    """The SDK's client for a running server (``srv`` from ``running_server``), with :data:`TOKEN` as its key."""
    return AsyncOpenAI(base_url=f"{srv.http_url}/v1", api_key=TOKEN)


async def next_of(conn: AsyncRealtimeConnection, kinds: set[str], timeout: float = 60.0,  # noqa: ASYNC109
                  seen: list[Any] | None = None) -> Any:
    """The next event whose type is in ``kinds`` (every event on the way is kept in ``seen``)."""
    deadline = time.monotonic() + timeout
    while True:
        event = await asyncio.wait_for(conn.recv(), max(0.1, deadline - time.monotonic()))
        if seen is not None:
            seen.append(event)
        if event.type in kinds:
            return event


@contextlib.asynccontextmanager
async def realtime_session(srv: Any, **query: str) -> AsyncIterator[tuple[AsyncRealtimeConnection, Any]]:
    """A connection that the server has accepted: ``(conn, session.created event)``.

    ``query`` goes on the URL (e.g. ``user_id``).
    """
    async with client(srv).realtime.connect(model="parley", extra_query=query) as conn:
        created = await next_of(conn, {"session.created"})
        yield conn, created


def user_text(text: str) -> dict[str, Any]:
    """A typed user message, as a ``conversation.item.create`` item."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def typed_turn(conn: AsyncRealtimeConnection, text: str, response: dict[str, Any] | None = None) -> None:
    """The user types ``text`` and asks for the answer (``conversation.item.create``, then ``response.create``)."""
    await conn.conversation.item.create(item=user_text(text))  # type: ignore[arg-type]
    if response is None:
        await conn.response.create()
    else:
        await conn.response.create(response=response)  # type: ignore[arg-type]


async def append_audio(conn: AsyncRealtimeConnection, pcm24: np.ndarray, chunk: int = 480,
                       interval_s: float = 0.02) -> None:
    """Append 24 kHz int16 audio in ``chunk`` samples, one every ``interval_s``.

    The defaults are 20 ms chunks at real time, so the server VAD hears the speech as it comes; with no
    VAD listening (manual turns) ``interval_s=0`` appends as fast as it goes.
    """
    for start in range(0, pcm24.size, chunk):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm24[start:start + chunk].tobytes()).decode())
        if interval_s:
            await asyncio.sleep(interval_s)


async def manual_turn(conn: AsyncRealtimeConnection, pcm24: np.ndarray) -> Any:
    """A manual turn (``turn_detection: null``): append 24 kHz audio in 20 ms chunks as fast as it goes, commit.

    Returns its ``conversation.item.input_audio_transcription.completed`` event.
    """
    await append_audio(conn, pcm24, interval_s=0)
    await conn.input_audio_buffer.commit()
    return await next_of(conn, {"conversation.item.input_audio_transcription.completed"})
