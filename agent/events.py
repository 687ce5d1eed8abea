"""Typed events a turn produces, in order: route, sources, text deltas, done."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.tools.base import Source


@dataclass(frozen=True)
class RouteChosen:
    """The router picked ``route`` (``direct`` or a tool name)."""

    route: str
    reason: str


@dataclass(frozen=True)
class SourcesFound:
    """A tool found these sources; the answer is grounded on them."""

    sources: list[Source]


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the reply, as soon as the LLM produced it."""

    delta: str


@dataclass
class TurnResult:
    """The outcome of a finished (or interrupted) turn."""

    turn_id: str
    text: str
    route: str
    route_reason: str
    sources: list[Source] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    """Milliseconds: ``memory``, ``route``, ``retrieval``, ``llm_ttft``, ``llm_total``, ``total``."""
    interrupted: bool = False
    error: str = ""


@dataclass(frozen=True)
class TurnDone:
    """The turn is over; ``result`` holds everything about it."""

    result: TurnResult


AgentEvent = RouteChosen | SourcesFound | TextDelta | TurnDone
