"""A Realtime session's configuration as ``session.update`` sets it, and as ``session.created``/``updated`` show it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from agent.client_tools import ClientTool, client_tool
from speech.protocol import TurnDetection

RATES = (24000, 16000)
"""PCM rates accepted both ways: the API's 24 kHz, and 16 kHz (what Parley's recognizer runs at)."""
DEFAULT_TURN_DETECTION: dict[str, Any] = {"type": "server_vad", "create_response": True, "interrupt_response": True}


@dataclass(frozen=True)
class RealtimeSettings:
    """What one Realtime connection asked for (fields a stock client may set; unknown ones are ignored)."""

    session_id: str
    model: str = "parley"
    instructions: str = ""
    voice: str = "parley"
    output_modalities: tuple[str, ...] = ("audio",)
    input_rate: int = 24000
    output_rate: int = 24000
    turn_detection: dict[str, Any] | None = field(default_factory=lambda: dict(DEFAULT_TURN_DETECTION))
    transcription: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] = "auto"
    client_tools: tuple[ClientTool, ...] = ()
    """``tools`` as the agent offers them to its model (agent/client_tools.py)."""

    def updated(self, session: dict[str, Any]) -> RealtimeSettings:
        """These settings with a ``session.update``'s ``session`` applied (only the fields it holds)."""
        changes: dict[str, Any] = {}
        if isinstance(session.get("instructions"), str):
            changes["instructions"] = session["instructions"]
        if "output_modalities" in session:
            modalities = tuple(session.get("output_modalities") or ())
            if not modalities or not set(modalities) <= {"audio", "text"}:
                raise ValueError("output_modalities must be ['audio'] or ['text']")
            changes["output_modalities"] = ("text",) if modalities == ("text",) else ("audio",)
        audio = session.get("audio") or {}
        for side in ("input", "output"):
            config = audio.get(side) or {}
            fmt = config.get("format")
            if fmt:
                if fmt.get("type", "audio/pcm") != "audio/pcm":
                    raise ValueError(f"audio.{side}.format: only audio/pcm (16-bit) is supported")
                rate = fmt.get("rate", 24000)
                if rate not in RATES:
                    raise ValueError(f"audio.{side}.format.rate must be one of {RATES}")
                changes[f"{side}_rate"] = rate
            if side == "output" and isinstance(config.get("voice"), str):
                changes["voice"] = config["voice"]
            if side == "input" and "turn_detection" in config:
                changes["turn_detection"] = _turn_detection(config["turn_detection"])
            if side == "input" and "transcription" in config:
                changes["transcription"] = config["transcription"]
        if "tools" in session:
            tools = session.get("tools") or ()
            if not isinstance(tools, list | tuple) or not all(isinstance(t, dict) for t in tools):
                raise ValueError("tools must be a list of tool objects")
            changes["tools"] = tuple(tools)
            changes["client_tools"] = tuple(client_tool(t) for t in tools)
        if "tool_choice" in session:
            changes["tool_choice"] = _tool_choice(session["tool_choice"])
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The effective configuration, as ``session.created`` and ``session.updated`` carry it."""
        return {
            "type": "realtime", "object": "realtime.session", "id": self.session_id, "model": self.model,
            "instructions": self.instructions, "output_modalities": list(self.output_modalities),
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": self.input_rate},
                          "turn_detection": self.turn_detection, "transcription": self.transcription,
                          "noise_reduction": None},
                "output": {"format": {"type": "audio/pcm", "rate": self.output_rate}, "voice": self.voice,
                           "speed": 1.0},
            },
            "tools": list(self.tools), "tool_choice": self.tool_choice,
        }


def _tool_choice(choice: Any) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "name": choice["name"]}
    raise ValueError("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}")


def _turn_detection(given: Any) -> dict[str, Any] | None:
    """``turn_detection`` checked: None (manual turns), or server VAD with the knobs Parley honours in range."""
    if given is None:
        return None
    if not isinstance(given, dict) or given.get("type", "server_vad") not in ("server_vad", "semantic_vad"):
        raise ValueError("turn_detection must be null, or of type 'server_vad' or 'semantic_vad'")
    bounds = {"threshold": (0.0, 1.0), "silence_duration_ms": (100, 10000), "prefix_padding_ms": (0, 3000)}
    for name, (low, high) in bounds.items():
        value = given.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high \
                or (name == "threshold" and value in (low, high)):
            raise ValueError(f"turn_detection.{name} must be a number in {'(' if name == 'threshold' else '['}"
                             f"{low}, {high}{')' if name == 'threshold' else ']'}")
    return {**DEFAULT_TURN_DETECTION, **given}


def vad_settings(turn_detection: dict[str, Any]) -> TurnDetection:
    """The server-VAD knobs Parley has an equivalent of, for the session (absent ones: the server's)."""
    silence, prefix = turn_detection.get("silence_duration_ms"), turn_detection.get("prefix_padding_ms")
    threshold = turn_detection.get("threshold")
    return TurnDetection(float(threshold) if threshold is not None else None,
                         int(silence) if silence is not None else None, int(prefix) if prefix is not None else None)
