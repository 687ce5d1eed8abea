"""Find time references in a query ("yesterday", "last week", "上周", "3天前") and turn them into windows."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

_CN_NUM = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


@dataclass(frozen=True)
class TimeWindow:
    """A half-open interval ``[start, end)`` in epoch seconds, plus the phrase that produced it."""

    start: float
    end: float
    phrase: str
    fuzzy: bool = False
    """A vague phrase ("recently", "最近"): a hint, not a filter (see ``RecallSettings.fuzzy_window_boost``)."""

    def contains(self, t: float) -> bool:
        """Whether ``t`` (epoch seconds) falls in the window (start included, end excluded)."""
        return self.start <= t < self.end


def _num(s: str) -> int:
    if s.isdigit():
        return int(s)
    if s in _CN_NUM:
        return _CN_NUM[s]
    if s.startswith("十"):  # 十二
        return 10 + _CN_NUM.get(s[1:], 0)
    if s.endswith("十"):  # 二十
        return 10 * _CN_NUM.get(s[:-1], 1)
    return 1


_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10}


def find_time_window(query: str, now: float, tz: tzinfo | None = None) -> TimeWindow | None:
    """The window a query refers to, or None.

    Days are calendar days in ``tz`` (default: the machine's zone); "last week" is the
    previous Monday-to-Sunday week, "last month" the previous calendar month. Fuzzy
    phrases ("a few days ago", "最近", "recently") give a trailing window.
    """
    q = query.lower()
    now_dt = datetime.fromtimestamp(now, tz) if tz else datetime.fromtimestamp(now).astimezone()
    day0 = now_dt.replace(hour=0, minute=0, second=0, microsecond=0)
    week0 = day0 - timedelta(days=day0.weekday())
    month0 = day0.replace(day=1)

    def days(start: datetime, n: float, phrase: str) -> TimeWindow:
        return TimeWindow(start.timestamp(), (start + timedelta(days=n)).timestamp(), phrase)

    m = re.search(r"(\d+|[一两二三四五六七八九十]+)\s*(天|日)(前|以前|之前)", q)
    if m:
        return days(day0 - timedelta(days=_num(m.group(1))), 1, m.group(0))
    m = re.search(r"\b(\d+|a|one|two|three|four|five|six|seven|ten)\s+days?\s+ago\b", q)
    if m:
        n = int(m.group(1)) if m.group(1).isdigit() else _WORDS[m.group(1)]
        return days(day0 - timedelta(days=n), 1, m.group(0))
    m = re.search(r"\b(?:last|past)\s+(\d+|two|three|four|five|six|seven|ten)\s+days\b", q)
    if m:
        n = int(m.group(1)) if m.group(1).isdigit() else _WORDS[m.group(1)]
        return TimeWindow((day0 - timedelta(days=n)).timestamp(), now + 1, m.group(0))
    rules: list[tuple[str, Callable[[], TimeWindow]]] = [
        (r"day before yesterday|前天", lambda: days(day0 - timedelta(days=2), 1, "day before yesterday")),
        (r"\byesterday\b|昨天|昨晚|昨日|last night", lambda: days(day0 - timedelta(days=1), 1, "yesterday")),
        (r"\btoday\b|今天|今日|this morning|今早|今晚|tonight", lambda: days(day0, 1, "today")),
        (
            r"last week|上周|上个星期|上星期|上个礼拜|上礼拜",
            lambda: days(week0 - timedelta(days=7), 7, "last week"),
        ),
        (r"this week|本周|这周|这个星期|这星期|这礼拜", lambda: days(week0, 7, "this week")),
        (
            r"last month|上个月|上月",
            lambda: TimeWindow(
                (month0 - timedelta(days=1)).replace(day=1).timestamp(), month0.timestamp(), "last month"
            ),
        ),
        (r"this month|本月|这个月", lambda: TimeWindow(month0.timestamp(), now + 1, "this month")),
        (
            r"few days ago|couple of days ago|几天前|前几天",
            lambda: days(day0 - timedelta(days=5), 5, "few days ago"),
        ),
        (
            r"\brecently\b|\blately\b|最近|近来",
            lambda: TimeWindow((day0 - timedelta(days=14)).timestamp(), (day0 + timedelta(days=1)).timestamp(),
                               "recently", fuzzy=True),
        ),
    ]
    for pattern, make in rules:
        if re.search(pattern, q):
            return make()
    return None


@dataclass(frozen=True)
class RelativeEvent:
    """A period named by an event of the user's own: "the week after I went hiking", "搬家之前的那个月"."""

    anchor: str
    """The words that name the event (searched for to find when it happened)."""
    rest: str
    """The query without the anchor and the period words."""
    after: bool
    days: float

    def window(self, anchor_time: float) -> TimeWindow:
        """The ``days`` before or after the event at ``anchor_time``, less the event's own session (6 h)."""
        # The anchor's own session (same evening) is neither before nor after it.
        gap = 6 * 3600.0
        if self.after:
            return TimeWindow(anchor_time + gap, anchor_time + self.days * 86400.0, self.anchor)
        return TimeWindow(anchor_time - self.days * 86400.0, anchor_time - gap, self.anchor)


_SPAN_EN = {"day": 1.0, "days": 3.0, "week": 7.0, "weeks": 14.0, "month": 31.0}
_SPAN_ZH = {"天": 1.0, "几天": 3.0, "周": 7.0, "星期": 7.0, "礼拜": 7.0, "个月": 31.0, "月": 31.0}
_REL_EN = re.compile(
    r"^(?P<rest>.*?)\b(?:in |during )?the (?P<span>day|days|week|weeks|month) (?P<dir>after|before) "
    r"(?P<anchor>.+?)[?.!]*$", re.IGNORECASE)
_REL_ZH = re.compile(
    r"^(?P<anchor>.+?)(?P<dir>之后|以后|后|之前|以前|前)的?(?:那|这)?(?:一)?(?P<span>几天|天|周|星期|礼拜|个月|月)"
    r"(?P<rest>.*)$")


def find_relative_event(query: str) -> RelativeEvent | None:
    """The event-relative period a query asks about, or None ("what did I do the week after my trip?")."""
    q = query.strip()
    m = _REL_EN.match(q)
    if m:
        anchor = re.sub(r"^(?:i |my |we |our )", "", m.group("anchor"), flags=re.IGNORECASE)
        return RelativeEvent(anchor=anchor, rest=m.group("rest"), after=m.group("dir").lower() == "after",
                             days=_SPAN_EN[m.group("span").lower()])
    m = _REL_ZH.match(q)
    if m and len(m.group("anchor")) >= 2:
        anchor = re.sub(r"^(?:我们|我)", "", m.group("anchor"))
        return RelativeEvent(anchor=anchor, rest=m.group("rest"), after=m.group("dir") in ("之后", "以后", "后"),
                             days=_SPAN_ZH[m.group("span")])
    return None
