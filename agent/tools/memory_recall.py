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
        "what did we talk about yesterday",
        "remind me what my favourite food is",
        "where did I say I live",
        "你还记得我说过什么吗",
        "我上周跟你说了什么",
        "我之前告诉过你我喜欢什么",
        "我们昨天聊了什么",
    )
    # No "what's my name" / "我叫什么名字" among the examples: the cues catch those, and as examples they
    # drew "who are you" and "你叫什么名字" here (bench.routing).
    cues = (
        # "you remember", not "remember": "how can I remember names" and "remember to call" are no recall.
        r"\b(you (still )?(remember|recall)|remind me what|did i (say|tell|mention)|i told you|my name|we talked"
        r"|last time|what('s| is| are| was) my)\b",
        # "还记得" / "记不记得", not "记住" ("怎么记住别人的名字" is a question about memorising).
        r"还记得|记不记得|你记得|我说过|我之前|我上次|告诉过你|我叫什么|我们聊过|我们昨天|来着"
        r"|我(的|最)\S{0,8}(是什么|是谁|是哪|是多少|叫什么)",
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
