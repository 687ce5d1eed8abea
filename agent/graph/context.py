"""What the graph's nodes need at run time, passed as LangGraph's run-time context."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel

from agent.client_tools import ClientTurn
from agent.config import AgentSettings
from agent.graph.router import LLMRouter, LocalRouter
from agent.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from agent.memory import MemoryStore
    from agent.memory_writer import MemoryWriter, TurnRecord


@dataclass(frozen=True)
class GraphContext:
    """Process-wide services, shared by every session's turns."""

    config: AgentSettings
    chat: BaseChatModel
    registry: ToolRegistry
    router: LocalRouter
    llm_router: LLMRouter | None
    memory: MemoryStore
    remember: Callable[[TurnRecord], None]
    """Queues a finished turn for the memory writer; returns at once."""
    writer: MemoryWriter | None = None
    commit: asyncio.Event | None = None
    """Per turn: when set, ``remember`` waits for it (a speculative turn is kept only once confirmed)."""
    client: ClientTurn | None = None
    """Per turn: the session client's instructions, tools and tool outputs (agent/client_tools.py)."""
