"""The Realtime API's side of a reply: one ``response`` with its items, and the socket's outbox.

A reply becomes ``response.created``, an assistant message item (announced at its first words or
audio, or at once when the session has no client tools, since then no call can come instead),
its text or audio deltas, then any calls of the client's tools as ``function_call`` items, and
``response.done`` with every item in ``output``.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agent.client_tools import ClientOptions, ToolCall
from agent.text_safety import replace_lone_surrogates
from speech.audio import PcmResampler
from speech.protocol import ResponseDone
from speech.transport.realtime import server_events as out

MAX_ITEMS_KEPT = 64


class Outbox:
    """Sends events on one socket and keeps the latest items (``conversation.item.retrieve`` reads them)."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.last_item: str | None = None
        """The conversation's last item: the next one's ``previous_item_id``."""

    async def send(self, event: dict[str, Any]) -> None:
        """Send one Realtime event (quietly nothing once the client has gone)."""
        if event["type"] in ("conversation.item.added", "conversation.item.done"):
            item = event["item"]
            self.items[item["id"]] = item
            self.items.move_to_end(item["id"])
            while len(self.items) > MAX_ITEMS_KEPT:
                self.items.popitem(last=False)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(replace_lone_surrogates(json.dumps(event, ensure_ascii=False)))

    async def add_item(self, item: dict[str, Any], done: bool = True) -> None:
        """A new item at the end of the conversation: ``conversation.item.added`` (and ``.done``)."""
        await self.send(out.server_event("conversation.item.added", previous_item_id=self.last_item, item=item))
        if done:
            await self.send(out.server_event("conversation.item.done", previous_item_id=self.last_item, item=item))
        self.last_item = item["id"]


@dataclass
class Response:
    """One reply on its way out, as a Realtime response."""

    turn_id: str
    audio: bool
    response_id: str = field(default_factory=lambda: out.new_id("resp"))
    item_id: str = field(default_factory=lambda: out.new_id("item"))
    transcript: list[str] = field(default_factory=list)
    resampler: PcmResampler | None = None
    cancel_reason: str | None = None
    opened: bool = False
    """The assistant message item was announced (at its first words or audio; a tool call may come instead)."""

    def where(self) -> dict[str, Any]:
        """The fields that place a content event: response, item, output and content index."""
        return {"response_id": self.response_id, "item_id": self.item_id, "output_index": 0, "content_index": 0}


class ResponseWriter:
    """Writes one session's responses to its outbox."""

    def __init__(self, outbox: Outbox, client: ClientOptions) -> None:
        self.outbox = outbox
        self.client = client

    async def begin(self, r: Response, modalities: Sequence[str]) -> None:
        """``response.created`` (and the message item, when no tool call can come instead)."""
        await self.outbox.send(out.server_event("response.created", response=out.response(
            r.response_id, "in_progress", [], modalities)))
        if not self.client.tools:
            await self.open_message(r)

    async def open_message(self, r: Response) -> None:
        """Announce the assistant message item and its content part (once)."""
        if r.opened:
            return
        r.opened = True
        item = out.assistant_item(r.item_id, "in_progress")
        await self.outbox.send(out.server_event("response.output_item.added", response_id=r.response_id,
                                                output_index=0, item=item))
        await self.outbox.add_item(item, done=False)
        await self.outbox.send(out.server_event("response.content_part.added", **r.where(),
                                                part=out.content_part(r.audio)))

    async def text(self, r: Response, delta: str) -> None:
        """The reply's next words: its audio transcript, or its text when text-only."""
        await self.open_message(r)
        r.transcript.append(delta)
        kind = "response.output_audio_transcript.delta" if r.audio else "response.output_text.delta"
        await self.outbox.send(out.server_event(kind, **r.where(), delta=delta))

    async def audio(self, r: Response, pcm: np.ndarray) -> None:
        """Reply audio at the client's rate, base64 in ``response.output_audio.delta``."""
        if pcm.size:
            delta = base64.b64encode(pcm.astype("<i2", copy=False).tobytes()).decode("ascii")
            await self.outbox.send(out.server_event("response.output_audio.delta", **r.where(), delta=delta))

    async def audio_done(self, r: Response) -> None:
        """The reply's audio has all been sent."""
        if r.resampler is not None and r.audio and r.opened:
            await self.audio(r, r.resampler.process(np.zeros(0, np.int16), last=True))
            await self.outbox.send(out.server_event("response.output_audio.done", **r.where()))
        r.resampler = None

    async def finish(self, r: Response, event: ResponseDone, modalities: Sequence[str]) -> None:
        """Close the message item, add the tool calls the turn ended in, then ``response.done``."""
        cancelled = event.interrupted or bool(event.merged)
        pending = self.client.pending
        ours = pending is not None and pending.turn_id == r.turn_id
        calls = pending.calls if pending is not None and ours and not cancelled else ()
        if ours and cancelled:
            self.client.pending = None  # a call cut off before the client saw it waits for nothing
        output = [await self._close_message(r, event, cancelled)] if r.opened or not calls else []
        for call in calls:
            output.append(await self._function_call(r, call, len(output)))
        await self.outbox.send(out.server_event("parley.metrics", response_id=r.response_id, metrics=event.metrics))
        details = ({"type": "cancelled", "reason": r.cancel_reason or "turn_detected"} if cancelled else None)
        await self.outbox.send(out.server_event("response.done", response=out.response(
            r.response_id, "cancelled" if cancelled else "completed", output, modalities, details)))

    async def _close_message(self, r: Response, event: ResponseDone, cancelled: bool) -> dict[str, Any]:
        await self.open_message(r)
        text = event.text if cancelled else (event.text or "".join(r.transcript))
        send = self.outbox.send
        done_kind = "response.output_audio_transcript.done" if r.audio else "response.output_text.done"
        await send(out.server_event(done_kind, **r.where(), **({"transcript": text} if r.audio else {"text": text})))
        part = out.content_part(r.audio, text)
        await send(out.server_event("response.content_part.done", **r.where(), part=part))
        item = out.assistant_item(r.item_id, "incomplete" if cancelled else "completed", part)
        await send(out.server_event("response.output_item.done", response_id=r.response_id, output_index=0,
                                    item=item))
        await send(out.server_event("conversation.item.done", previous_item_id=None, item=item))
        return item

    async def _function_call(self, r: Response, call: ToolCall, index: int) -> dict[str, Any]:
        """One call of a client's tool, as the SDKs expect it: the item, its arguments, done."""
        item_id, send = out.new_id("item"), self.outbox.send
        where = {"response_id": r.response_id, "item_id": item_id, "output_index": index}
        started = out.function_call_item(item_id, call.call_id, call.name, "", "in_progress")
        await send(out.server_event("response.output_item.added", response_id=r.response_id, output_index=index,
                                    item=started))
        await self.outbox.add_item(started, done=False)
        # The model's arguments arrive whole (the call is known once its stream ends): one delta, then done.
        await send(out.server_event("response.function_call_arguments.delta", **where, call_id=call.call_id,
                                    delta=call.arguments))
        await send(out.server_event("response.function_call_arguments.done", **where, call_id=call.call_id,
                                    name=call.name, arguments=call.arguments))
        item = out.function_call_item(item_id, call.call_id, call.name, call.arguments, "completed")
        await send(out.server_event("response.output_item.done", response_id=r.response_id, output_index=index,
                                    item=item))
        await send(out.server_event("conversation.item.done", previous_item_id=None, item=item))
        return item
