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
    )
    cues = (r"\bwhat time\b|\bwhat('s| is) the date\b|\bwhat day\b", r"几点|几号|星期几|周几|什么日子")
    instructions = "Tell the user the date or time below in one short sentence."

    def __init__(self, timezone: str = "Asia/Shanghai") -> None:
        self._zone = ZoneInfo(timezone)

    async def run(self, query: str, ctx: ToolContext) -> ToolResult:
        """The current date and time in the configured time zone."""
        now = datetime.now(self._zone)
        return ToolResult(text=f"Now: {now:%A %Y-%m-%d %H:%M} ({self._zone.key} time).")
