"""Follow-up suggestions: three short questions the user might ask next, made by the chat model.

Used after a reply has been spoken (``--suggest_followups``): the voice session sends them
as a ``suggestions`` event, and the CleanS2S compatibility endpoint as its ``q1``/``q2``/``q3``
message. Never raises: any failure (timeout, LLM error, unusable answer) gives no suggestions.
"""

from __future__ import annotations

import asyncio
import logging
import re

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from agent.language import detect_language

log = logging.getLogger(__name__)

COUNT = 3
MAX_CHARS = 120
"""Longest suggestion kept (a longer line is cut at a word or character boundary)."""

SUGGEST_PROMPT = (
    "You suggest follow-ups in a voice conversation. Given the user's last question and the "
    "assistant's answer, write exactly three short questions the user might ask next, "
    "one per line, with no numbering, no quotes and no other text. "
    "Write them in {language}."
)
_LANGUAGES = {"en": "English", "zh": "Chinese (simplified)"}
_LEADER = re.compile(r"^\s*(?:[-*•]+|\d{1,2}\s*[.)、:：]|[Qq]\d\s*[.):：]?|问题?\s*\d\s*[.)、:：]?)\s*")


def parse_suggestions(text: str, count: int = COUNT) -> list[str]:
    """Up to ``count`` distinct questions from the model's answer, one per line."""
    out: list[str] = []
    for line in text.splitlines():
        line = _LEADER.sub("", line).strip().strip("\"'“”‘’「」").strip()
        if not line or len(line) < 2:
            continue
        if len(line) > MAX_CHARS:
            cut = line[:MAX_CHARS]
            line = cut.rsplit(" ", 1)[0] if " " in cut else cut
        if line.lower() not in (s.lower() for s in out):
            out.append(line)
        if len(out) == count:
            break
    return out


async def suggest_followups(chat: BaseChatModel, user_text: str, answer: str,
                            timeout_s: float = 15.0) -> list[str]:
    """Three follow-up questions for the exchange, or ``[]`` if anything goes wrong."""
    if not user_text.strip() or not answer.strip():
        return []
    language = _LANGUAGES.get(detect_language(user_text + answer), "English")
    messages = [
        SystemMessage(SUGGEST_PROMPT.format(language=language)),
        HumanMessage(f"User: {user_text[:2000]}\nAssistant: {answer[:4000]}"),
    ]
    try:
        response = await asyncio.wait_for(chat.ainvoke(messages), timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # suggestions are optional: never fail the session
        log.info("no follow-up suggestions: %s", type(exc).__name__)
        return []
    content = response.content if isinstance(response.content, str) else str(response.content)
    items = parse_suggestions(content)
    return items if len(items) == COUNT else []
