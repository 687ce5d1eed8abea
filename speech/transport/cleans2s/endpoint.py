"""The two CleanS2S sockets of a server (``--cleans2s_compat``): pairing, limits, sessions.

:class:`~speech.transport.cleans2s.bridge.CleanS2SBridge` translates one pair; this module accepts the
sockets, checks the token, pairs them without guessing (:mod:`speech.transport.cleans2s.pairing`) and
runs one :class:`~speech.voice.session.VoiceSession` per pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.conversation import Conversation
from agent.ids import InvalidIdError, validate_user_id
from speech.protocol import SessionStart
from speech.transport.admission import CLOSE_BAD_START, CLOSE_TOO_MANY
from speech.transport.cleans2s.bridge import RESUME_FOR_S, CleanS2SBridge
from speech.transport.cleans2s.messages import RATE, CompatError, parse_inbound
from speech.transport.cleans2s.pairing import ALONE, AMBIGUOUS, FULL, PAIR_KEY, Pairing, place_key
from speech.transport.http_api import bearer_token, split_target
from speech.transport.metrics import MeteredLink

if TYPE_CHECKING:
    from speech.transport.ws_server import ParleyServer

log = logging.getLogger(__name__)

CLOSE_NO_PARTNER = 4404
CLOSE_AMBIGUOUS = 4409
PAIR_SETTLE_S = 0.5
"""A browser opens both sockets at once; a pair is formed only once this long has passed with no
third socket from the same place (the cost: a CleanS2S session starts half a second later)."""


def _query(source: ServerConnection | Request) -> dict[str, list[str]]:
    request = source if isinstance(source, Request) else source.request
    return parse_qs(split_target(request.path)[1]) if request is not None else {}


def _pair_key(ws: ServerConnection) -> str | None:
    values = _query(ws).get("pair")
    return values[0] if values else None


class CleanS2SEndpoint:
    """The two CleanS2S sockets of one :class:`~speech.transport.ws_server.ParleyServer`.

    Its sessions are the server's: one admission, one session limit, one drain.
    """

    def __init__(self, server: ParleyServer) -> None:
        self.server = server
        self.options = server.options
        self.pairing = Pairing(PAIR_SETTLE_S, server.options.cleans2s_pair_window_s, 2 * server.options.max_sessions)
        self._resume: OrderedDict[str, tuple[float, int, Conversation]] = OrderedDict()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[CleanS2SEndpoint]:
        """Listen on both ports until the block ends."""
        opts = self.options
        if opts.cleans2s_user_id is not None:
            validate_user_id(opts.cleans2s_user_id)
        for host in {opts.recv_host, opts.send_host}:
            if host not in ("127.0.0.1", "localhost", "::1") and not opts.auth_token:
                log.warning("CleanS2S sockets listen on %s without --auth_token: anyone who can reach them can "
                            "talk to Parley. Set a token and add ?token=... to the front end's addresses.", host)
        # 9001: up to 4x the limit a frame is read and refused with an error (message_too_large), as on /ws.
        # 9002: the browser never sends there, so nothing over the limit is read at all (close 1009).
        limits: dict[str, Any] = {"process_request": self._check_request, "compression": None}  # PCM hardly compresses
        async with serve(self._handle_recv, opts.recv_host, opts.recv_port, max_size=4 * opts.max_message_bytes,
                         **limits) as recv_server, \
                serve(self._handle_send, opts.send_host, opts.send_port, max_size=opts.max_message_bytes,
                      **limits) as send_server:
            opts.recv_port = int(next(iter(recv_server.sockets)).getsockname()[1])
            opts.send_port = int(next(iter(send_server.sockets)).getsockname()[1])
            log.info("CleanS2S compatibility: browsers send on ws://%s:%d, receive on ws://%s:%d",
                     opts.recv_host, opts.recv_port, opts.send_host, opts.send_port)
            yield self

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse an upgrade without the token, or with a malformed pairing key.

        With ``--auth_token``, the upgrade must carry it (``?token=`` in the address, or a Bearer header);
        a ``?pair=`` key must look like one (see speech/transport/cleans2s/pairing.py).
        """
        query = _query(request)
        pair = query.get("pair")
        if pair is not None and (len(pair) != 1 or not PAIR_KEY.fullmatch(pair[0])):
            return connection.respond(400, "pair must be 16-128 characters of A-Z a-z 0-9 _ -\n")
        if not self.options.auth_token:
            return None
        token = bearer_token(request.headers)
        if token is None:
            values = query.get("token")
            token = values[0] if values else None
        if self.server.admission.token_ok(token):
            return None
        return connection.respond(401, "missing or invalid token\n")

    # --- pairing -------------------------------------------------------------------

    async def _partner(self, side: str, ws: ServerConnection) -> ServerConnection | None:
        """This socket's partner, or None after closing it with the reason (see pairing.py)."""
        outcome = await self.pairing.pair(side, place_key(ws, _pair_key(ws)), ws)
        if not isinstance(outcome, str):
            return outcome
        code, reason = {ALONE: (CLOSE_NO_PARTNER, "no partner socket from this browser"),
                        AMBIGUOUS: (CLOSE_AMBIGUOUS, "several browsers connecting from one address; reconnect"),
                        FULL: (CLOSE_TOO_MANY, "too many sockets waiting")}[outcome]
        log.info("CleanS2S %s socket refused: %s", side, outcome)
        await ws.close(code, reason)
        return None

    async def _handle_send(self, ws: ServerConnection) -> None:
        """9002: the browser only listens here. Anything it sends is ignored; its closing ends the pair."""
        partner = await self._partner("send", ws)
        if partner is None:
            return
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
        await partner.close()

    async def _handle_recv(self, ws: ServerConnection) -> None:
        """9001: pair, wait for the first message with a uid, then run a voice session."""
        partner = await self._partner("recv", ws)
        if partner is None:
            return
        try:
            await self._run_pair(ws, partner)
        except ConnectionClosed:
            pass
        except Exception:  # one pair's failure must not touch the others
            log.exception("CleanS2S pair failed")
        finally:
            await ws.close()
            await partner.close()

    async def _first_message(self, ws: ServerConnection) -> tuple[str | bytes, str] | None:
        """The first message that names a usable uid (others get a placeholder reply)."""
        deadline = time.monotonic() + self.options.start_timeout_s
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return None
            try:
                uid = parse_inbound(raw, self.options.max_message_bytes).uid
                validate_user_id(uid)
            except CompatError as exc:
                await ws.send(json.dumps({"placeholder": "", "error": exc.code}))
                continue
            except InvalidIdError:
                await ws.send(json.dumps({"placeholder": "", "error": "invalid_user_id"}))
                continue
            return raw, uid

    async def _run_pair(self, recv_ws: ServerConnection, send_ws: ServerConnection) -> None:
        first = await self._first_message(recv_ws)
        if first is None:
            await recv_ws.close(CLOSE_BAD_START, "no message with a uid")
            return
        raw, uid = first
        server = self.server
        user_id = self.options.cleans2s_user_id or uid
        # The token was checked at the upgrade (_check_request); the uid by _first_message.
        refusal = server.admission.check("cleans2s", user_id, token_checked=True)
        if refusal is not None:
            await recv_ws.send(json.dumps({"placeholder": "", "error": refusal.code}))
            await recv_ws.close(refusal.close_code, refusal.code.replace("_", " "))
            return
        count, conv = 0, None
        resumed = self._resume.pop(uid, None)
        if resumed is not None and time.monotonic() - resumed[0] < RESUME_FOR_S:
            _, count, conv = resumed  # the same browser reconnected: keep its count and topic
        if conv is None:
            conv = server.agent.new_conversation(user_id)
        bridge = CleanS2SBridge(recv_ws, send_ws, uid, count, wait_for_suggestions=self.options.suggest_followups,
                                max_bytes=self.options.max_message_bytes)
        bridge.conv = conv
        bridge.feed_first(raw)
        start = SessionStart(user_id=user_id, sample_rate=RATE, audio_output=True)
        link = MeteredLink(bridge, server.metrics.observer("cleans2s", conv.session_id, user_id))
        try:
            await server.run_session(link, start, conv)
        finally:
            bridge.shutdown()
            self._resume[uid] = (time.monotonic(), bridge.count, conv)
            while len(self._resume) > 256:
                self._resume.popitem(last=False)
