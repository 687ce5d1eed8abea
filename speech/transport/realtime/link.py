"""One ``/v1/realtime`` connection as a session's :class:`~speech.voice.link.ClientLink`.

Client events become Parley input (audio resampled to 16 kHz, typed text held until
``response.create``, ``response.cancel`` an interrupt); Parley's typed events become the Realtime
API's event sequence (speech started/stopped, the user item and its transcription, then per reply
``response.created`` ... ``response.done``), with reply audio resampled to the client's rate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

import numpy as np
from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    OutputAudioBufferClearEvent,
    RealtimeConversationItemFunctionCallOutput,
    RealtimeConversationItemSystemMessage,
    RealtimeConversationItemUserMessage,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agent.client_tools import ClientOptions
from speech.audio import PcmResampler
from speech.protocol import (
    AudioOutput,
    ErrorEvent,
    Interrupt,
    ResponseAudioEnd,
    ResponseAudioStart,
    ResponseDone,
    ResponseTextDelta,
    Route,
    ServerEvent,
    Sources,
    Suggestions,
    TextInput,
    TranscriptFinal,
    TranscriptPartial,
    Truncate,
    VadEnd,
    VadStart,
)
from speech.transport.realtime import server_events as out
from speech.transport.realtime.client_events import RealtimeError, parse_client_event
from speech.transport.realtime.manual import MIN_COMMIT_MS, AudioBuffer, Transcriber, finished
from speech.transport.realtime.responses import MAX_ITEMS_KEPT, Outbox, Response, ResponseWriter
from speech.transport.realtime.settings import RealtimeSettings, vad_settings
from speech.voice.link import AudioIn, ClientInput, LinkClosed

log = logging.getLogger(__name__)

SESSION_RATE = 16000
"""The rate the session receives: the link resamples the client's audio once, to what VAD and ASR use."""
ENGINE_FAILURES = ("asr_failed", "tts_failed", "llm_failed")
TRANSCRIBE_TIMEOUT_S = 30.0


class RealtimeLink:
    """The Realtime API's events over one WebSocket, as typed Parley input and output."""

    def __init__(self, ws: ServerConnection, settings: RealtimeSettings, max_frame_bytes: int,
                 client: ClientOptions | None = None, transcribe: Transcriber | None = None,
                 client_tools: bool = True) -> None:
        self.ws = ws
        self.settings = settings
        self.max_frame_bytes = max_frame_bytes
        self.client = client if client is not None else ClientOptions()
        """The session's client settings the agent reads at each turn (shared with its Conversation)."""
        self.client_tools = client_tools
        """Whether the agent's model can call tools (the embedded one cannot): else ``tools`` is refused."""
        self._transcribe = transcribe
        self._buffer = AudioBuffer(SESSION_RATE)
        self._transcribing: asyncio.Task[None] | None = None
        self._resampler = PcmResampler(settings.input_rate, SESSION_RATE)
        self._audio_ms = 0.0
        self._queued: list[ClientInput] = []
        self._texts: list[str] = []
        """Typed user items not yet answered: ``response.create`` sends them as one turn."""
        self._typed_turn = False
        self._response: Response | None = None
        self._user_item: str | None = None
        self.outbox = Outbox(ws)
        self._turn_of_item: dict[str, str] = {}
        """Which turn each recent assistant item answered (``conversation.item.truncate`` names the item)."""
        self.responses = ResponseWriter(self.outbox, self.client)
        """The latest items by id, for ``conversation.item.retrieve`` (the Agents SDK asks on an interruption)."""

    # --- client -> session -------------------------------------------------------

    async def receive(self) -> ClientInput:
        """The next input for the session; events that need no session answer here and are not returned."""
        while not self._queued:
            await self.read_event()
        return self._queued.pop(0)

    async def read_event(self, timeout_s: float | None = None) -> BaseModel | None:
        """Read one client event and answer it (what the session must hear is queued for ``receive``).

        ``None``: the frame was refused with an ``error`` event. ``TimeoutError`` when no frame came
        within ``timeout_s``; :class:`LinkClosed` once the client has gone.
        """
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout_s)
        except ConnectionClosed:
            raise LinkClosed from None
        try:
            event, obj = parse_client_event(raw, self.max_frame_bytes)
            self._queued.extend(await self.handle(event, obj))
        except RealtimeError as exc:
            await self.send(out.error(exc.code, exc.message, exc.param, exc.event_id))
            return None
        return event

    async def handle(self, event: BaseModel, raw: dict[str, Any]) -> list[ClientInput]:
        """Answer one client event; what the session must hear about is returned."""
        event_id = getattr(event, "event_id", None)
        if isinstance(event, SessionUpdateEvent):
            return await self._update_session(raw["session"], event_id)
        if isinstance(event, InputAudioBufferAppendEvent):
            return self._audio(event.audio, event_id)
        if isinstance(event, InputAudioBufferClearEvent | OutputAudioBufferClearEvent):
            if isinstance(event, InputAudioBufferClearEvent):
                self._buffer.clear()
                self._resampler.reset()  # what the filter holds back is cleared audio too
            await self.send(out.server_event(event.type.replace(".clear", ".cleared")))
            return []
        if isinstance(event, InputAudioBufferCommitEvent):
            await self._commit(event_id)
            return []
        if isinstance(event, ConversationItemCreateEvent):
            await self._create_item(event, event_id)
            return []
        if isinstance(event, ResponseCreateEvent):
            return await self._respond(event, event_id)
        if isinstance(event, ResponseCancelEvent):
            if self._response is None:
                raise RealtimeError("response_cancel_not_active", "there is no active response to cancel",
                                    None, event_id)
            self._response.cancel_reason = "client_cancelled"
            return [Interrupt()]
        if isinstance(event, ConversationItemTruncateEvent):
            turn_id = self._turn_of_item.get(event.item_id)
            if turn_id is None:
                raise RealtimeError("item_not_found", f"no assistant item {event.item_id!r} in this session",
                                    "item_id", event_id)
            await self.send(out.server_event("conversation.item.truncated", item_id=event.item_id,
                                             content_index=event.content_index, audio_end_ms=event.audio_end_ms))
            # History keeps the lesser of what Parley's pacing counts as heard and what the client played.
            return [Truncate(turn_id, event.audio_end_ms)]
        if isinstance(event, ConversationItemRetrieveEvent):
            item = self.outbox.items.get(event.item_id)
            if item is None:
                raise RealtimeError("item_not_found", f"no item {event.item_id!r} in this session", "item_id",
                                    event_id)
            await self.send(out.server_event("conversation.item.retrieved", item=item))
            return []
        raise RealtimeError("unsupported_feature", f"{raw.get('type')} is not supported", "type", event_id)

    def _audio(self, b64: str, event_id: str | None) -> list[ClientInput]:
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("invalid_value", "audio is not valid base64", "audio", event_id) from None
        if len(raw) % 2:
            raise RealtimeError("invalid_value", "16-bit PCM needs an even number of bytes", "audio", event_id)
        return self._route(self._resampler.process(np.frombuffer(raw, dtype="<i2")), event_id)

    def _route(self, pcm: np.ndarray, event_id: str | None) -> list[ClientInput]:
        """16 kHz audio to where it goes: the manual turn's buffer, else the session (and its VAD)."""
        self._audio_ms += len(pcm) * 1000 / SESSION_RATE
        if self.settings.turn_detection is None:  # manual turns: held here until commit
            try:
                self._buffer.append(pcm)
            except ValueError as exc:
                raise RealtimeError("input_audio_buffer_full", str(exc), "audio", event_id) from None
            return []
        return [AudioIn(pcm.tobytes())] if pcm.size else []

    async def _update_session(self, session: dict[str, Any], event_id: str | None) -> list[ClientInput]:
        try:
            settings = self.settings.updated(session)
        except ValueError as exc:
            raise RealtimeError("invalid_value", str(exc), "session", event_id) from None
        if settings.client_tools and not self.client_tools:
            raise RealtimeError("unsupported_feature", "client tools need a model that calls tools; the embedded "
                                "model cannot (configure --lm_model_url)", "session.tools", event_id)
        audio_before, vad_before = "audio" in self.settings.output_modalities, self.settings.turn_detection
        self.settings = settings
        self.client.instructions = settings.instructions
        self.client.tools, self.client.tool_choice = settings.client_tools, settings.tool_choice
        if settings.input_rate != self._resampler.from_rate:
            self._resampler = PcmResampler(settings.input_rate, SESSION_RATE)
        if settings.turn_detection is not None:
            self._buffer.clear()  # server VAD again: audio goes to the session as it comes
        await self.send(out.server_event("session.updated", session=settings.describe()))
        audio = "audio" in settings.output_modalities
        changed: list[ClientInput] = [AudioOutput(audio)] if audio != audio_before else []
        if settings.turn_detection is not None and settings.turn_detection != vad_before:
            changed.append(vad_settings(settings.turn_detection))
        return changed

    async def _commit(self, event_id: str | None) -> None:
        """A manual turn ends: announce the user item, transcribe it in the background."""
        if self.settings.turn_detection is not None:
            raise RealtimeError("invalid_value", "with server VAD Parley ends turns itself: set "
                                "audio.input.turn_detection to null for manual turns", None, event_id)
        # A commit takes all audio appended so far, with the resampler's tail (its filter delay).
        self._route(self._resampler.flush(), event_id)
        if self._buffer.ms < MIN_COMMIT_MS or self._transcribe is None:
            raise RealtimeError("input_audio_buffer_commit_empty", f"buffer too small: expected at least "
                                f"{MIN_COMMIT_MS:.0f} ms of audio, have {self._buffer.ms:.0f} ms", None, event_id)
        audio, item_id = self._buffer.take(), out.new_id("item")
        await self.send(out.server_event("input_audio_buffer.committed", item_id=item_id,
                                         previous_item_id=self.outbox.last_item))
        await self.outbox.add_item(out.user_item(item_id, None, audio=True), done=False)
        await finished(self._transcribing, TRANSCRIBE_TIMEOUT_S)  # in order: one commit's words, then the next's
        self._transcribing = asyncio.get_running_loop().create_task(self._transcribe_item(item_id, audio))

    async def _transcribe_item(self, item_id: str, audio: np.ndarray) -> None:
        assert self._transcribe is not None
        try:
            text = await self._transcribe(audio)
        except Exception as exc:  # the session goes on; the client hears why nothing was transcribed
            log.warning("manual turn ASR failed: %s", type(exc).__name__)
            await self.send(out.server_event("conversation.item.input_audio_transcription.failed", item_id=item_id,
                                             content_index=0, error={"type": "server_error", "code": "asr_failed",
                                                                     "message": "speech recognition failed"}))
            return
        if text:
            self._texts.append(text)
        await self.send(out.server_event("conversation.item.input_audio_transcription.completed",
                                         item_id=item_id, content_index=0, transcript=text))
        await self.send(out.server_event("conversation.item.done", previous_item_id=None,
                                         item=out.user_item(item_id, text, audio=True)))

    async def _create_item(self, event: ConversationItemCreateEvent, event_id: str | None) -> None:
        item = event.item
        if isinstance(item, RealtimeConversationItemFunctionCallOutput):
            await self._tool_output(item, event_id)
            return
        if not isinstance(item, RealtimeConversationItemUserMessage | RealtimeConversationItemSystemMessage):
            raise RealtimeError("unsupported_feature", "only user and system messages and function_call_output "
                                "items can be added to the conversation", "item", event_id)
        texts = [part.text for part in item.content if getattr(part, "type", None) == "input_text" and part.text]
        if not texts:
            raise RealtimeError("invalid_value", f"a {item.role} item needs input_text content", "item.content",
                                event_id)
        item_id = getattr(item, "id", None) or out.new_id("item")
        if isinstance(item, RealtimeConversationItemSystemMessage):  # e.g. LiveKit's chat context: instructions
            self.client.add_system_item(" ".join(texts))
            await self.outbox.add_item({**out.user_item(item_id, " ".join(texts)), "role": "system"})
            return
        self._texts.append(" ".join(texts))
        await self.outbox.add_item(out.user_item(item_id, " ".join(texts)))

    async def _tool_output(self, item: RealtimeConversationItemFunctionCallOutput, event_id: str | None) -> None:
        try:
            self.client.add_output(item.call_id, item.output)
        except KeyError:
            raise RealtimeError("invalid_value", f"no function call {item.call_id!r} is waiting for its output",
                                "item.call_id", event_id) from None
        item_id = item.id or out.new_id("item")
        done = out.function_call_output_item(item_id, item.call_id, item.output)
        await self.outbox.add_item(done)

    async def _respond(self, event: ResponseCreateEvent, event_id: str | None) -> list[ClientInput]:
        if self._response is not None:
            raise RealtimeError("conversation_already_has_active_response",
                                "a response is in progress: cancel it or wait for response.done", None, event_id)
        try:
            await finished(self._transcribing, TRANSCRIBE_TIMEOUT_S)  # a manual turn's words answer it
        except TimeoutError:
            raise RealtimeError("server_error", "the committed audio is still being transcribed", None,
                                event_id) from None
        waiting = self.client.waiting_query
        if not self._texts and waiting is None:
            raise RealtimeError("invalid_value", "nothing to respond to: add a user item first (with server VAD, "
                                "spoken turns are answered without response.create)", None, event_id)
        params = event.response
        if params is not None and params.instructions is not None:
            self.client.next_instructions = params.instructions  # this response only (agent/client_tools.py)
        text, self._texts = "\n".join(self._texts) or (waiting or ""), []
        self._typed_turn = True
        return [TextInput(text)]

    # --- session -> client -------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        """Send one Realtime event (quietly nothing once the client has gone)."""
        await self.outbox.send(event)

    async def send_event(self, event: ServerEvent) -> None:
        """Translate one Parley event into the Realtime API's events."""
        r = self._response
        ours = r is not None and getattr(event, "turn_id", None) == r.turn_id
        if isinstance(event, VadStart):
            self._user_item = out.new_id("item")
            await self.send(out.server_event("input_audio_buffer.speech_started", item_id=self._user_item,
                                             audio_start_ms=int(self._audio_ms)))
        elif isinstance(event, VadEnd):
            item_id = self._user_item or out.new_id("item")
            await self.send(out.server_event("input_audio_buffer.speech_stopped", item_id=item_id,
                                             audio_end_ms=int(self._audio_ms)))
            await self.send(out.server_event("input_audio_buffer.committed", item_id=item_id,
                                             previous_item_id=self.outbox.last_item))
            await self.outbox.add_item(out.user_item(item_id, None, audio=True), done=False)
        elif isinstance(event, TranscriptPartial):
            await self.send(out.server_event("parley.transcript.partial", item_id=self._user_item, text=event.text))
        elif isinstance(event, TranscriptFinal):
            await self._begin(event)
        elif r is None or not ours:
            if isinstance(event, ResponseDone | Route | Sources | ResponseTextDelta | ResponseAudioStart
                          | ResponseAudioEnd):
                return  # a reply this link has no response for (e.g. one superseded before its transcript)
            await self._session_event(event)
        elif isinstance(event, Route):
            await self.send(out.server_event("parley.route", response_id=r.response_id, route=event.route,
                                             reason=event.reason))
        elif isinstance(event, Sources):
            await self.send(out.server_event("parley.sources", response_id=r.response_id, items=event.items))
        elif isinstance(event, ResponseTextDelta):
            await self.responses.text(r, event.delta)
        elif isinstance(event, ResponseAudioStart):
            await self.responses.open_message(r)
            r.resampler = PcmResampler(event.sample_rate, self.settings.output_rate)
        elif isinstance(event, ResponseAudioEnd):
            await self.responses.audio_done(r)
        elif isinstance(event, ResponseDone):
            self._response = None
            await self.responses.finish(r, event, self.settings.output_modalities)
        else:
            await self._session_event(event)

    async def _session_event(self, event: ServerEvent) -> None:
        if isinstance(event, Suggestions):
            await self.send(out.server_event("parley.suggestions", items=event.items))
        elif isinstance(event, ErrorEvent):
            kind = "server_error" if event.code in ENGINE_FAILURES else "invalid_request_error"
            await self.send(out.error(event.code, event.message, kind=kind))

    async def send_audio(self, pcm: bytes) -> None:
        """Reply audio: resampled to the client's output rate, base64 in ``response.output_audio.delta``."""
        r = self._response
        if r is not None and r.audio and r.resampler is not None:
            await self.responses.audio(r, r.resampler.process(np.frombuffer(pcm, dtype="<i2")))

    async def close(self, code: int, reason: str) -> None:
        """Close the socket."""
        await self.ws.close(code, reason)

    async def _begin(self, event: TranscriptFinal) -> None:
        if not self._typed_turn:
            item_id = self.outbox.last_item or out.new_id("item")
            await self.send(out.server_event("conversation.item.input_audio_transcription.completed",
                                             item_id=item_id, content_index=0, transcript=event.text))
            await self.send(out.server_event("conversation.item.done", previous_item_id=None,
                                             item=out.user_item(item_id, event.text, audio=True)))
        self._typed_turn = False
        r = self._response = Response(event.turn_id, audio="audio" in self.settings.output_modalities)
        self._turn_of_item[r.item_id] = r.turn_id
        while len(self._turn_of_item) > MAX_ITEMS_KEPT:
            self._turn_of_item.pop(next(iter(self._turn_of_item)))
        await self.responses.begin(r, self.settings.output_modalities)
