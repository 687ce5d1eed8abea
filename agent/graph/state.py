"""The state that flows through one turn of the conversation graph."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from agent.client_tools import ToolCall
from agent.tools.base import Source


def merge_metrics(left: dict[str, float], right: dict[str, float]) -> dict[str, float]:
    """Each node adds its own timings; none overwrites another's."""
    return {**left, **right}


@dataclass
class TurnState:
    """One user turn: the input, the decisions made on the way, and the reply."""

    query: str
    """What the user said (transcript or typed text)."""
    user_id: str
    session_id: str
    turn_id: str = ""
    language: str = "en"
    """``zh`` or ``en``, detected from ``query``."""
    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)
    """The session's recent history; ``respond`` appends the reply."""
    memories: list[str] = field(default_factory=list)
    """Relevant long-term memories (already dated), put in every prompt."""
    route: str = ""
    """``direct`` or the name of a registered tool."""
    route_reason: str = ""
    """How the router decided: which cue or similarity, or the LLM."""
    context: str = ""
    """The tool's reference text for the prompt."""
    context_note: str = ""
    """What the model must know about this turn's tool (e.g. search unavailable)."""
    instructions: str = ""
    """How to use ``context``, from the tool."""
    sources: Annotated[list[Source], operator.add] = field(default_factory=list)
    answer: str = ""
    error: str = ""
    """Set when the LLM failed; the answer then carries a short apology."""
    metrics: Annotated[dict[str, float], merge_metrics] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    """The client's tools the model called instead of answering (agent/client_tools.py)."""
