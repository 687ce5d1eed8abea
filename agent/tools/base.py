"""The tool interface: what a tool is, what it gets, and what it returns.

A tool is a name, a description, example utterances that should route to it,
optional lexical cues, and an async ``run``. See README "Adding a tool".
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from agent.config import AgentSettings
    from agent.embedding import Embedder
    from agent.memory import MemoryStore


@dataclass(frozen=True)
class Source:
    """Where a piece of an answer came from."""

    title: str
    url: str
    snippet: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form, as sent in ``sources`` events."""
        return {"title": self.title, "url": self.url, "snippet": self.snippet}


@dataclass
class ToolResult:
    """What a tool hands to the answer: reference text for the prompt, plus its sources."""

    text: str
    sources: list[Source] = field(default_factory=list)
    note: str | None = None
    """Said to the model as a fact about this turn, e.g. that search was unavailable."""


@dataclass(frozen=True)
class ToolContext:
    """Per-turn facts a tool may use."""

    user_id: str
    session_id: str
    language: str
    """``zh`` or ``en``, detected from the user's text."""


@dataclass
class ToolDeps:
    """Shared, process-wide things a tool may need, passed to :meth:`Tool.create`."""

    config: AgentSettings
    embedder: Embedder
    memory: MemoryStore


class Tool(ABC):
    """A capability the router can send a turn to.

    Subclasses set the class attributes and implement :meth:`run`. Tools that need
    shared resources override :meth:`create`.
    """

    name: ClassVar[str]
    """Unique route name, e.g. ``web_search``; also the LLM function name."""
    description: ClassVar[str]
    """One sentence for the LLM router and for people."""
    examples: ClassVar[tuple[str, ...]]
    """Utterances that should route here (Chinese and English help both languages)."""
    cues: ClassVar[tuple[str, ...]] = ()
    """Regular expressions (case-insensitive) that are strong evidence for this tool."""
    instructions: ClassVar[str] = "Answer using the reference material below."
    """How the answering model should use this tool's output."""

    @classmethod
    def create(cls, deps: ToolDeps) -> Tool:
        """Build the tool from shared resources. The default takes none."""
        return cls()

    @abstractmethod
    async def run(self, query: str, ctx: ToolContext) -> ToolResult:
        """Do the work for one user turn. Raise on failure; the graph turns it into a note."""

    def cue_matches(self, text: str) -> bool:
        """True if one of this tool's lexical cues occurs in ``text``."""
        return any(re.search(cue, text, re.IGNORECASE) for cue in self.cues)
