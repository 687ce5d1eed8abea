"""The ``/ws`` wire protocol: typed client messages and server events (docs/protocol.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


class ProtocolError(ValueError):
    """A client message Parley cannot accept; sent back as an ``error`` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SessionStart:
    """``session.start``: who is talking and how their audio is encoded."""

    user_id: str
    token: str | None = None
    sample_rate: int = 16000
    audio_output: bool = True


@dataclass(frozen=True)
class TextInput:
    """``text``: typed input instead of speech."""

    text: str


@dataclass(frozen=True)
class Interrupt:
    """``interrupt``: stop the reply now."""


@dataclass(frozen=True)
class SessionEnd:
    """``session.end``: the client is done."""


ClientMessage = SessionStart | TextInput | Interrupt | SessionEnd


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in obj or obj[name] is None:
        if default is ...:
            raise ProtocolError("bad_message", f"'{name}' is required")
        return default
    value = obj[name]
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise ProtocolError("bad_message", f"'{name}' has the wrong type")
    return value


def json_object(raw: str) -> dict[str, Any]:
    """Decode a JSON text frame that must hold an object, or raise :class:`ProtocolError`."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "message must be a JSON object")
    return obj


def parse_client_message(raw: str) -> ClientMessage:
    """Parse one JSON text frame from a client, or raise :class:`ProtocolError`."""
    obj = json_object(raw)
    kind = obj.get("type")
    if kind == "session.start":
        rate = _field(obj, "sample_rate", int, 16000)
        if rate not in SUPPORTED_SAMPLE_RATES:
            raise ProtocolError("bad_sample_rate", f"sample_rate must be one of {SUPPORTED_SAMPLE_RATES}")
        return SessionStart(
            user_id=_field(obj, "user_id", str),
            token=_field(obj, "token", str, None),
            sample_rate=rate,
            audio_output=_field(obj, "audio_output", bool, True),
        )
    if kind == "text":
        return TextInput(_field(obj, "text", str))
    if kind == "interrupt":
        return Interrupt()
    if kind == "session.end":
        return SessionEnd()
    raise ProtocolError("unknown_type", f"unknown message type: {str(kind)[:40]!r}")


@dataclass(frozen=True)
class ServerEvent:
    """A JSON event to the client: ``type`` plus fields."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"type": self.type, **self.fields}, ensure_ascii=False)


def event(kind: str, **fields: Any) -> ServerEvent:
    """Build a server event; dataclass values are turned into dicts."""
    return ServerEvent(kind, {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in fields.items()})


def error_event(code: str, message: str) -> ServerEvent:
    """An ``error`` event with a stable code and a human message."""
    return event("error", code=code, message=message)
