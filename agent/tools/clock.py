"""``clock``: the current date and time. Small on purpose: it is the how-to for new tools."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from agent.tools.base import Tool, ToolContext, ToolResult


class ClockTool(Tool):
    """Tells the current date, time and weekday."""

    name = "clock"
    description = "Tell the current date, time or day of the week."
    examples = (
        "what time is it",
        "what's the date today",
        "what day of the week is it",
        "现在几点了",
        "今天几号",
        "今天星期几",
        "tell me the current time",
        "what's the date and time",
        "现在是什么时间",
        "几点钟了",
    )
    cues = (
        r"\bwhat time\b|\bwhat('s| is) (the|today'?s) (date|time)\b|\bwhat day\b|\bwhat (month|year) is it\b"
        r"|\bcurrent (date|time)\b|\b(tell me|know|check) the time\b|\btime please\b",
        # Not "几点开门" (opening hours: web_search's cue).
        r"几点(?!开门|关门|营业)|几号|几月几[日号]|星期几|周几|什么日子|上午还是下午"
        r"|(现在|当前|告诉我|看一下|报一下)的?时间|北京时间",
    )
    instructions = "Tell the user the date or time below in one short sentence."

    def __init__(self, timezone: str = "Asia/Shanghai") -> None:
        self._zone = ZoneInfo(timezone)

    async def run(self, query: str, ctx: ToolContext) -> ToolResult:
        """The current date and time in the configured time zone."""
        now = datetime.now(self._zone)
        return ToolResult(text=f"Now: {now:%A %Y-%m-%d %H:%M} ({self._zone.key} time).")
