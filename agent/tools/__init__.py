"""Tools the router can send a turn to. Add yours to ``TOOL_FACTORIES`` (README: "Adding a tool")."""

from __future__ import annotations

from agent.tools.base import Source, Tool, ToolContext, ToolDeps, ToolResult
from agent.tools.clock import ClockTool
from agent.tools.memory_recall import MemoryRecallTool
from agent.tools.registry import DIRECT_ROUTE, ToolFactory, ToolRegistry
from agent.tools.web_search import WebSearchTool

TOOL_FACTORIES: list[ToolFactory] = [
    WebSearchTool.create,
    MemoryRecallTool.create,
    ClockTool.create,
]
"""Every built-in tool; one line per tool."""


def build_registry(deps: ToolDeps) -> ToolRegistry:
    """A registry holding every tool in :data:`TOOL_FACTORIES`."""
    return ToolRegistry([factory(deps) for factory in TOOL_FACTORIES])


__all__ = [
    "DIRECT_ROUTE",
    "TOOL_FACTORIES",
    "Source",
    "Tool",
    "ToolContext",
    "ToolDeps",
    "ToolRegistry",
    "ToolResult",
    "build_registry",
]
