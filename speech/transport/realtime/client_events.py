"""Client events of the OpenAI Realtime API (GA names), parsed with the ``openai`` package's own models.

The models (``openai.types.realtime``) are the SDK's definition of the wire format, so a message a
stock client can send is a message Parley can read; anything else is a :class:`RealtimeError`
answered with an ``error`` event (the session goes on).
"""

from __future__ import annotations

from typing import Any

from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    OutputAudioBufferClearEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel, ValidationError

from speech.protocol import ProtocolError, json_object

MODELS: dict[str, type[BaseModel]] = {
    "session.update": SessionUpdateEvent,
    "input_audio_buffer.append": InputAudioBufferAppendEvent,
    "input_audio_buffer.commit": InputAudioBufferCommitEvent,
    "input_audio_buffer.clear": InputAudioBufferClearEvent,
    "output_audio_buffer.clear": OutputAudioBufferClearEvent,
    "conversation.item.create": ConversationItemCreateEvent,
    "conversation.item.truncate": ConversationItemTruncateEvent,
    "conversation.item.delete": ConversationItemDeleteEvent,
    "conversation.item.retrieve": ConversationItemRetrieveEvent,
    "response.create": ResponseCreateEvent,
    "response.cancel": ResponseCancelEvent,
}


class RealtimeError(ProtocolError):
    """A client event Parley cannot use: ``code`` and ``param`` as the Realtime API's ``error`` event has them."""

    def __init__(self, code: str, message: str, param: str | None = None, event_id: str | None = None) -> None:
        super().__init__(code, message)
        self.param = param
        self.event_id = event_id


def parse_client_event(raw: str | bytes, max_bytes: int) -> tuple[BaseModel, dict[str, Any]]:
    """One text frame as its typed event (and the JSON it came as), or :class:`RealtimeError`.

    The SDK's models allow only 24 kHz PCM; Parley also takes 16 kHz, so the rates are checked by
    the session settings, from the JSON, and left out of the model's validation.
    """
    if isinstance(raw, bytes):
        raise RealtimeError("invalid_event", "Realtime events are JSON text frames")
    try:
        obj = json_object(raw, max_bytes)
    except ProtocolError as exc:
        raise RealtimeError(exc.code, exc.message) from None
    kind, event_id = obj.get("type"), obj.get("event_id")
    event_id = event_id if isinstance(event_id, str) else None
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise RealtimeError("invalid_value", f"Invalid value: {str(kind)[:60]!r}. Supported values are: "
                            + ", ".join(f"'{k}'" for k in MODELS), "type", event_id)
    checked = _without_rates(obj) if kind == "session.update" else obj
    try:
        return model.model_validate(checked), obj
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ()))
        raise RealtimeError("invalid_value", f"{kind}: {first.get('msg', 'invalid')} at '{param}'",
                            param or None, event_id) from None


def _without_rates(obj: dict[str, Any]) -> dict[str, Any]:
    session = obj.get("session")
    if not isinstance(session, dict):
        return obj
    audio = session.get("audio")
    if not isinstance(audio, dict):
        return obj
    sides = {}
    for side, config in audio.items():
        fmt = config.get("format") if isinstance(config, dict) else None
        if isinstance(fmt, dict) and "rate" in fmt:
            config = {**config, "format": {k: v for k, v in fmt.items() if k != "rate"}}
        sides[side] = config
    return {**obj, "session": {**session, "audio": sides}}
