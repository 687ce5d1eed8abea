"""``ws://HOST:PORT/v1/realtime``: admit a Realtime API client and run a Parley session for it.

The SDKs build this URL from ``base_url=http://HOST:PORT/v1`` and send the API key as
``Authorization: Bearer KEY`` (checked against ``--auth_token`` at the upgrade, by
speech/transport/http_api.py). The user id comes from the ``user_id`` query parameter or the
``X-Parley-User-Id`` header; without one the connection gets a guest id of its own.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from openai.types.realtime import SessionUpdateEvent
from websockets.asyncio.server import ServerConnection

from agent.client_tools import ClientOptions
from speech.protocol import SessionStart
from speech.transport.http_api import bearer_token, split_target
from speech.transport.metrics import MeteredLink
from speech.transport.realtime import server_events as out
from speech.transport.realtime.link import SESSION_RATE, RealtimeLink
from speech.transport.realtime.manual import transcriber
from speech.transport.realtime.settings import RealtimeSettings
from speech.voice.link import LinkClosed

if TYPE_CHECKING:
    from speech.transport.ws_server import ParleyServer

log = logging.getLogger(__name__)

PATH = "/v1/realtime"
USER_HEADER = "X-Parley-User-Id"


def user_id_of(ws: ServerConnection) -> str:
    """The user id the client named (query ``user_id``, or the header), else a guest id for this connection."""
    request = ws.request
    if request is not None:
        query = parse_qs(split_target(request.path)[1])
        given = query.get("user_id")
        named = (given[-1] if given else None) or request.headers.get(USER_HEADER)
        if named:
            return named
    return f"guest-{uuid.uuid4().hex[:12]}"


async def _settle(link: RealtimeLink, timeout_s: float) -> None:
    """Apply the ``session.update`` events a client sends first, so the session starts as configured.

    The first other event is kept for the session (whether reply audio is synthesized at all is fixed
    when the session starts: a text-only client costs no TTS).
    """
    while True:
        try:
            event = await link.read_event(timeout_s)
        except TimeoutError:
            return
        if event is not None and not isinstance(event, SessionUpdateEvent):
            return


async def serve_realtime(server: ParleyServer, ws: ServerConnection) -> None:
    """One Realtime connection, from ``session.created`` to close."""
    user_id = user_id_of(ws)
    token = bearer_token(ws.request.headers) if ws.request is not None else None
    refusal = server.admission.check("realtime", user_id, token)
    settings = RealtimeSettings(session_id=out.new_id("sess"))
    client = ClientOptions()
    link = RealtimeLink(ws, settings, server.options.max_message_bytes, client, transcriber(server.engines),
                        client_tools=server.agent.client_tools_supported)
    if refusal is not None:
        await link.send(out.error(refusal.code, refusal.message))
        await ws.close(refusal.close_code, refusal.code.replace("_", " "))
        return
    conv = server.agent.new_conversation(user_id)
    conv.client = client  # the link's session.update and response.create reach this session's turns
    with server.admission.reserving():  # a client still configuring counts against --max_sessions
        try:
            await link.send(out.server_event("session.created", session=settings.describe()))
            await _settle(link, server.options.start_timeout_s)
        except LinkClosed:
            return
    # No await from here to run_session's admission.holding: the reserved place passes to the session.
    start = SessionStart(user_id=user_id, sample_rate=SESSION_RATE,
                         audio_output="audio" in link.settings.output_modalities)
    await server.run_session(MeteredLink(link, server.metrics.observer("realtime", conv.session_id, user_id)),
                             start, conv)
