"""The ``/ws`` wire protocol: typed client messages and server events (docs/protocol.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from agent.text_safety import has_lone_surrogate, replace_lone_surrogates

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


@dataclass(frozen=True)
class AudioOutput:
    """The client turned reply audio on or off mid-session (Realtime ``output_modalities``; not on ``/ws``).

    Off, the next replies are not synthesized at all (no TTS work), not only left unsent.
    """

    enabled: bool


@dataclass(frozen=True)
class TurnDetection:
    """The client's own VAD settings for its session (Realtime ``turn_detection``; not on ``/ws``).

    ``None`` keeps the server's: speech probability threshold, end-of-turn silence, audio kept before
    the start of speech.
    """

    threshold: float | None = None
    silence_ms: int | None = None
    prefix_ms: int | None = None


@dataclass(frozen=True)
class Truncate:
    """The client played only ``played_ms`` of turn ``turn_id``'s audio (Realtime ``conversation.item.truncate``)."""

    turn_id: str
    played_ms: int


ClientMessage = SessionStart | TextInput | Interrupt | SessionEnd | AudioOutput | TurnDetection | Truncate


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in obj or obj[name] is None:
        if default is ...:
            raise ProtocolError("bad_message", f"'{name}' is required")
        return default
    value = obj[name]
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise ProtocolError("bad_message", f"'{name}' has the wrong type")
    return value


def frame_size(raw: str | bytes, limit: int) -> int:
    """The size of a frame in bytes as it came over the wire, counted only as far as needed against ``limit``.

    A text frame of n characters is n to 4n bytes of UTF-8.
    """
    if isinstance(raw, bytes) or len(raw) > limit or 4 * len(raw) <= limit:
        return len(raw)
    return len(raw.encode("utf-8", "surrogatepass"))


def check_frame_size(raw: str | bytes, limit: int | None) -> None:
    """Refuse a frame over ``limit`` bytes before anything parses it (``message_too_large``)."""
    if limit is not None and frame_size(raw, limit) > limit:
        raise ProtocolError("message_too_large", f"message over {limit} bytes")


def _has_lone_surrogate(obj: object) -> bool:
    r"""True if a string anywhere in decoded JSON holds half of a UTF-16 pair (``"\ud800"``).

    Such a string cannot be encoded as UTF-8: it would fail later, when a reply quoting it is
    sent or a memory holding it is saved. Iterative, as the nesting may be as deep as the
    parser allows.
    """
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_object(raw: str, max_bytes: int | None = None) -> dict[str, Any]:
    """Decode a JSON text frame that must hold an object, or raise :class:`ProtocolError`.

    Refused: frames over ``max_bytes``, anything ``json.loads`` refuses (including integers of
    more than 4,300 digits, a ``ValueError``, and nesting too deep, a ``RecursionError``), and
    strings holding a lone UTF-16 surrogate.
    """
    check_frame_size(raw, max_bytes)
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError, as is the digit limit
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "message must be a JSON object")
    if _has_lone_surrogate(obj):
        raise ProtocolError("bad_text", "message holds text that is not valid Unicode (a lone surrogate)")
    return obj


def parse_client_message(raw: str, max_bytes: int | None = None) -> ClientMessage:
    """Parse one JSON text frame from a client, or raise :class:`ProtocolError`."""
    obj = json_object(raw, max_bytes)
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


# --- server events ---------------------------------------------------------------
# One frozen dataclass per event kind of docs/protocol.md: the session builds them, each transport
# turns them into its own wire format (``/ws``: :meth:`ServerEvent.to_json`; CleanS2S: its 9002 messages).


@dataclass(frozen=True)
class ServerEvent:
    """A JSON event to the client; ``type`` is the wire name, the fields are the event's own."""

    type: ClassVar[str] = ""

    def fields(self) -> dict[str, Any]:
        """The event's fields as sent (``None``-valued optional fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str:
        """The event as JSON; a lone surrogate (e.g. from the model) becomes U+FFFD, so it can be sent."""
        return replace_lone_surrogates(json.dumps({"type": self.type, **self.fields()}, ensure_ascii=False))


@dataclass(frozen=True)
class SessionReady(ServerEvent):
    """``session.ready``: the session is open; reply audio comes at ``output_sample_rate``."""

    type: ClassVar[str] = "session.ready"
    session_id: str
    output_sample_rate: int


@dataclass(frozen=True)
class VadStart(ServerEvent):
    """``vad.start``: speech confirmed (sent first, so a client can stop playing at once)."""

    type: ClassVar[str] = "vad.start"


@dataclass(frozen=True)
class VadEnd(ServerEvent):
    """``vad.end``: the end of the user's turn is confirmed."""

    type: ClassVar[str] = "vad.end"


@dataclass(frozen=True)
class TranscriptPartial(ServerEvent):
    """``transcript.partial``: the utterance's words so far, after a pause the user went on from."""

    type: ClassVar[str] = "transcript.partial"
    text: str


@dataclass(frozen=True)
class TranscriptFinal(ServerEvent):
    """``transcript.final``: the recognised (or typed) text of a turn."""

    type: ClassVar[str] = "transcript.final"
    text: str
    turn_id: str


@dataclass(frozen=True)
class Route(ServerEvent):
    """``route``: what the agent decided to do for the turn."""

    type: ClassVar[str] = "route"
    turn_id: str
    route: str
    reason: str


@dataclass(frozen=True)
class Sources(ServerEvent):
    """``sources``: what the answer is grounded on (``items``: title, url, snippet)."""

    type: ClassVar[str] = "sources"
    turn_id: str
    items: list[dict[str, Any]]


@dataclass(frozen=True)
class ResponseTextDelta(ServerEvent):
    """``response.text.delta``: reply text as the model writes it."""

    type: ClassVar[str] = "response.text.delta"
    turn_id: str
    delta: str


@dataclass(frozen=True)
class ResponseAudioStart(ServerEvent):
    """``response.audio.start``: binary reply audio follows at ``sample_rate``."""

    type: ClassVar[str] = "response.audio.start"
    turn_id: str
    sample_rate: int


@dataclass(frozen=True)
class ResponseAudioEnd(ServerEvent):
    """``response.audio.end``: no more audio for this turn."""

    type: ClassVar[str] = "response.audio.end"
    turn_id: str


@dataclass(frozen=True)
class ResponseDone(ServerEvent):
    """``response.done``: the turn is over; ``text`` is what was spoken (or heard before an interruption)."""

    type: ClassVar[str] = "response.done"
    turn_id: str
    text: str
    interrupted: bool
    metrics: dict[str, Any]
    merged: bool | None = None
    """``True`` when the user went on before hearing anything: the turn opens the next one (else not sent)."""


@dataclass(frozen=True)
class Suggestions(ServerEvent):
    """``suggestions``: follow-up questions after a reply (``--suggest_followups``)."""

    type: ClassVar[str] = "suggestions"
    turn_id: str
    items: list[str]


@dataclass(frozen=True)
class ErrorEvent(ServerEvent):
    """``error``: a stable ``code`` (docs/protocol.md) and a human message; the session goes on."""

    type: ClassVar[str] = "error"
    code: str
    message: str


def error_event(code: str, message: str) -> ErrorEvent:
    """An ``error`` event with a stable code and a human message."""
    return ErrorEvent(code, message)
