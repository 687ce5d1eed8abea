"""Periods named by the user's own events: "what did I do the week after I went hiking?"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.memory import MemoryStore
from agent.memory.timewindow import find_relative_event, find_time_window


@pytest.mark.parametrize(
    ("query", "anchor", "after", "days"),
    [
        ("What did I do in the week after I went hiking?", "went hiking", True, 7.0),
        ("what did I do the day before my dentist appointment", "dentist appointment", False, 1.0),
        ("我去了科技馆之后的那一周做了什么?", "去了科技馆", True, 7.0),
        ("搬家之前的那个月我在忙什么", "搬家", False, 31.0),
    ],
)
def test_relative_event_phrases(query, anchor, after, days):
    rel = find_relative_event(query)
    assert rel is not None and (rel.anchor, rel.after, rel.days) == (anchor, after, days)


def test_plain_questions_have_no_relative_event():
    for q in ["What is my cat called?", "我最近开始学什么了?", "What did I do last week?", "我三天前做了什么"]:
        assert find_relative_event(q) is None
    assert find_time_window("我最近开始学什么了?", 0.0, UTC).fuzzy


def test_search_finds_what_happened_the_week_after_an_event(tmp_path, embedder):
    store = MemoryStore(tmp_path / "mem", embedder=embedder)
    day = 86400.0
    t0 = datetime(2026, 3, 2, 19, tzinfo=UTC).timestamp()
    store.add_many("u", [
        {"text": "I went hiking up in the hills with Tom today.", "created_at": t0, "session_id": "a"},
        {"text": "I went to a jazz concert downtown with Mia.", "created_at": t0 - 20 * day, "session_id": "b"},
        {"text": "I took a pottery class in the old town with Ben.", "created_at": t0 + 4 * day,
         "session_id": "c"},
        {"text": "Work was busy, three meetings back to back.", "created_at": t0 + 30 * day, "session_id": "d"},
        {"text": "I went kayaking by the harbour with Ivy.", "created_at": t0 + 40 * day, "session_id": "e"},
    ])
    now = t0 + 60 * day
    top = store.search("u", "What did I do in the week after I went hiking?", k=1, now=now, tz=UTC)
    assert top[0].text.startswith("I took a pottery class")
    top = store.search("u", "我去爬山之后的那一周做了什么?", k=5, now=now, tz=UTC)
    assert top  # no Chinese anchor found: still an answer, never an error
    store.close()
