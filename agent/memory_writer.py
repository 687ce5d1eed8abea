"""Saves finished turns to long-term memory in the background, never on the response path.

Turns are queued and written by one worker task. When fact extraction is on,
the writer also asks the LLM for short lasting facts about the user, debounced:
it waits until the user has been quiet for ``debounce_s`` and then reads all the
turns that arrived meanwhile in one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from agent.graph.prompts import FACT_EXTRACTION_PROMPT

if TYPE_CHECKING:
    from agent.memory import MemoryStore

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 400
"""How much of a reply is kept with the turn: enough to recall what was said."""


@dataclass(frozen=True)
class TurnRecord:
    """One exchange to remember."""

    user_id: str
    session_id: str
    user_text: str
    reply_text: str
    interrupted: bool = False
    created_at: float = field(default_factory=time.time)
    turn_id: str = ""
    replaces: bool = False
    """The turn was saved already (e.g. in full, before a barge-in cut it): replace that memory."""
    forget: bool = False
    """With ``replaces``: only delete the saved memory (the turn merged into the next one)."""

    def memory_text(self) -> str:
        """The text stored for the turn: the user's words first, then the start of the reply."""
        reply = self.reply_text[:MAX_REPLY_CHARS]
        return f"{self.user_text}\n(Parley: {reply})" if reply else self.user_text


def parse_facts(text: str) -> list[str]:
    """Facts from the extraction reply: one per line, bullets stripped, NONE ignored."""
    facts = []
    for line in text.splitlines():
        fact = line.strip().lstrip("-*•0123456789. ").strip()
        if fact and fact.upper() != "NONE" and len(fact) <= 300:
            facts.append(fact)
    return facts


class MemoryWriter:
    """A background worker that writes turns (and extracted facts) to a :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore, chat: BaseChatModel | None, debounce_s: float = 2.0) -> None:
        self._store = store
        self._chat = chat
        self._debounce_s = debounce_s
        self._queue: asyncio.Queue[TurnRecord] = asyncio.Queue()
        self._pending_facts: dict[str, list[TurnRecord]] = defaultdict(list)
        self._fact_tasks: dict[str, asyncio.Task[None]] = {}
        self._extracting: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._ids_by_turn: OrderedDict[str, str] = OrderedDict()
        self.saved = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        """Turns queued and not yet written (a growing backlog means writes are slower than turns)."""
        return self._queue.qsize()

    def submit(self, turn: TurnRecord) -> None:
        """Queue ``turn``; returns at once. Must be called from the event loop's thread."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="memory-writer")
        self._queue.put_nowait(turn)

    async def _run(self) -> None:
        while True:
            turn = await self._queue.get()
            try:
                old_id = self._ids_by_turn.pop(turn.turn_id, None) if turn.replaces else None
                if old_id is not None:
                    with contextlib.suppress(KeyError):  # the user may have deleted it meanwhile
                        await asyncio.to_thread(self._store.delete, turn.user_id, old_id)
                if turn.forget:
                    continue
                memory_id = await asyncio.to_thread(
                    self._store.add, turn.user_id, turn.memory_text(), kind="turn",
                    metadata={"session_id": turn.session_id, "interrupted": turn.interrupted},
                    created_at=turn.created_at,
                )
                if turn.turn_id:
                    self._ids_by_turn[turn.turn_id] = memory_id
                    while len(self._ids_by_turn) > 1024:
                        self._ids_by_turn.popitem(last=False)
                self.saved += 1
                if self._chat is not None:
                    self._schedule_facts(turn)
            except Exception:  # one bad write must not stop the writer
                self.failed += 1
                log.exception("could not save a turn of user %s", turn.user_id,
                              extra={"user_id": turn.user_id, "session_id": turn.session_id, "turn_id": turn.turn_id})
            finally:
                self._queue.task_done()

    def _schedule_facts(self, turn: TurnRecord) -> None:
        self._pending_facts[turn.user_id].append(turn)
        previous = self._fact_tasks.get(turn.user_id)
        if previous is not None and previous not in self._extracting:
            previous.cancel()  # debounce: still waiting, so the newer task reads all pending turns
        self._fact_tasks[turn.user_id] = asyncio.get_running_loop().create_task(
            self._extract_after_quiet(turn.user_id)
        )

    async def _extract_after_quiet(self, user_id: str, *, wait: bool = True) -> None:
        if wait:
            await asyncio.sleep(self._debounce_s)
        turns = self._pending_facts.pop(user_id, [])
        if not turns or self._chat is None:
            return
        task = asyncio.current_task()
        if task is not None:
            self._extracting.add(task)  # past the wait: no longer cancelled by newer turns
        conversation = "\n".join(f"User: {t.user_text}\nAssistant: {t.reply_text}" for t in turns)
        try:
            reply = await self._chat.ainvoke([HumanMessage(FACT_EXTRACTION_PROMPT.format(conversation=conversation))])
            for fact in parse_facts(str(reply.content)):
                await asyncio.to_thread(
                    self._store.add, user_id, fact, kind="fact",
                    metadata={"session_id": turns[-1].session_id}, created_at=turns[-1].created_at,
                )
        except Exception as exc:
            log.warning("fact extraction failed for user %s: %s", user_id, type(exc).__name__,
                        extra={"user_id": user_id})
        finally:
            self._extracting.discard(task)

    async def flush(self) -> None:
        """Wait until every queued turn is saved and pending facts are extracted."""
        await self._queue.join()
        for user_id, task in list(self._fact_tasks.items()):
            if task in self._extracting:
                await asyncio.gather(task, return_exceptions=True)
            elif not task.done():
                task.cancel()
                await self._extract_after_quiet(user_id, wait=False)
        self._fact_tasks.clear()

    async def aclose(self) -> None:
        """Flush, then stop the worker."""
        await self.flush()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
