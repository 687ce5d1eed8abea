"""The tool registry: the graph builds one branch per registered tool."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agent.tools.base import Tool, ToolDeps

DIRECT_ROUTE = "direct"
"""The route that answers with the LLM alone."""


class ToolRegistry:
    """An ordered set of tools, keyed by name."""

    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools or []:
            self.register(tool)

    def register(self, tool: Tool) -> Tool:
        """Add ``tool``; its name must be new and not ``direct``."""
        if not tool.name.isidentifier():
            raise ValueError(f"tool name must be an identifier: {tool.name!r}")
        if tool.name == DIRECT_ROUTE or tool.name in self._tools:
            raise ValueError(f"tool name already taken: {tool.name!r}")
        if not tool.examples:
            raise ValueError(f"tool {tool.name!r} needs example utterances for the router")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        """The tool called ``name`` (KeyError if none)."""
        return self._tools[name]

    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


ToolFactory = Callable[[ToolDeps], Tool]
