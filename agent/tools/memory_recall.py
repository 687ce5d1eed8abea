"""``memory_recall``: answer from the user's long-term memories, with their dates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agent.tools.base import Source, Tool, ToolContext, ToolDeps, ToolResult

if TYPE_CHECKING:
    from agent.memory import MemoryStore


def memory_date(created_at: object) -> str:
    """A memory's time as ``YYYY-MM-DD HH:MM`` (UTC), whatever form the store keeps it in."""
    if isinstance(created_at, int | float):
        created_at = datetime.fromtimestamp(created_at, tz=UTC)
    if isinstance(created_at, datetime):
        return created_at.strftime("%Y-%m-%d %H:%M")
    return str(created_at)[:16]


def format_memories(records: list) -> str:
    """One line per memory, dated, for the prompt."""
    return "\n".join(f"- ({memory_date(r.created_at)}, {r.kind}) {r.text}" for r in records)


class MemoryRecallTool(Tool):
    """Recalls what the user said or told Parley in earlier conversations."""

    name = "memory_recall"
    description = (
        "Recall what the user told the assistant in earlier conversations (their facts, preferences, past questions)."
    )
    examples = (
        "do you remember what I told you about my dog",
        "what did I say last week",
        "what's my name",
        "what did we talk about yesterday",
        "remind me what my favourite food is",
        "where did I say I live",
        "你还记得我说过什么吗",
        "我上周跟你说了什么",
        "我叫什么名字",
        "我之前告诉过你我喜欢什么",
        "我们昨天聊了什么",
    )
    cues = (
        r"\b(remember|recall|remind me|did i (say|tell|mention)|i told you|my name|we talked|last time)\b",
        r"记得|记住|我说过|我之前|我上次|告诉过你|我叫什么|我们聊过|我们昨天|提醒我",
    )
    instructions = (
        "Answer from the user's memories below (each is dated). If they do not hold the answer, "
        "say you do not remember that."
    )

    def __init__(self, memory: MemoryStore, k: int = 8) -> None:
        self._memory = memory
        self._k = k

    @classmethod
    def create(cls, deps: ToolDeps) -> Tool:
        """The tool, over the agent's memory store."""
        return cls(deps.memory)

    async def run(self, query: str, ctx: ToolContext) -> ToolResult:
        """The user's memories that match ``query``, dated, as reference text."""
        records = await asyncio.to_thread(self._memory.search, ctx.user_id, query, self._k)
        if not records:
            return ToolResult(text="", note="There are no memories of this user that match the question.")
        sources = [Source(f"memory {memory_date(r.created_at)}", f"memory:{r.id}", r.text[:160]) for r in records]
        return ToolResult(text=format_memories(records), sources=sources)
