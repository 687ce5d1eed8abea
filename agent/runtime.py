"""The agent as the rest of Parley uses it: build once per process, run turns per session."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass, replace
from datetime import date
from typing import Any

from langchain_core.messages import AIMessageChunk
from langgraph.types import StreamMode

from agent.client_tools import PendingCalls, ToolCall
from agent.config import AgentSettings
from agent.conversation import Conversation
from agent.embedded_llm import EmbeddedLLMServer, launch_embedded
from agent.embedding import Embedder, load_embedder
from agent.events import AgentEvent, RouteChosen, SourcesFound, TextDelta, TurnDone, TurnResult
from agent.graph import GraphContext, build_graph
from agent.graph.prompts import system_prompt
from agent.graph.router import LLMRouter, LocalRouter
from agent.language import detect_language
from agent.llm import ChatModels, build_chat_models
from agent.memory import MemoryStore, open_memory
from agent.memory_writer import MemoryWriter, TurnRecord
from agent.suggestions import suggest_followups
from agent.text_safety import replace_lone_surrogates
from agent.tools import Tool, ToolDeps, build_registry
from agent.tools.base import Source
from agent.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


class InputError(ValueError):
    """User input Parley refuses, with a message fit to show the user."""


@dataclass(frozen=True)
class Toolbox:
    """The tools and the router that picks among them: what needs the embedders but not the LLM."""

    registry: ToolRegistry
    router: LocalRouter

    @classmethod
    def build(cls, config: AgentSettings, embedder: Embedder, memory: MemoryStore,
              extra_tools: Iterable[Tool] = ()) -> Toolbox:
        """Index the knowledge folder and embed the router's examples (about 2 s at start-up)."""
        registry = build_registry(ToolDeps(config, embedder, memory))
        for tool in extra_tools:
            registry.register(tool)
        router = LocalRouter(registry, load_embedder(config.router_embedding_model_name),
                             config.router_threshold, config.router_margin)
        return cls(registry, router)


class Agent:
    """The compiled graph plus the services it runs on. One per process; safe for many sessions."""

    def __init__(
        self,
        config: AgentSettings,
        models: ChatModels,
        embedder: Embedder,
        memory: MemoryStore,
        extra_tools: Iterable[Tool] = (),
        toolbox: Toolbox | None = None,
    ) -> None:
        self.config = config
        self.models = models
        self.embedder = embedder
        self.memory = memory
        toolbox = toolbox or Toolbox.build(config, embedder, memory, extra_tools)
        self.registry = toolbox.registry
        self.writer = MemoryWriter(memory, models.chat if config.flag_enabled(config.extract_facts) else None)
        llm_router = (
            LLMRouter(models.chat, self.registry) if config.flag_enabled(config.lm_tool_routing) else None
        )
        self.context = GraphContext(
            config=config,
            chat=models.chat,
            registry=self.registry,
            router=toolbox.router,
            llm_router=llm_router,
            memory=memory,
            remember=self.writer.submit,
        )
        self.graph = build_graph(self.registry)

    @classmethod
    def build(cls, config: AgentSettings, extra_tools: Iterable[Tool] = (),
              embedded: EmbeddedLLMServer | None = None) -> Agent:
        """Load the embedder, open memory, connect the LLM (starting the embedded one if needed).

        The embedded LLM's process is launched first (or was, by the caller: ``embedded``),
        so it loads its model while we load the embedder. Waiting for it (and its warm-up) runs in a
        thread beside the embedders, memory and the tools: neither needs the other.
        """
        embedded = embedded or launch_embedded(config)
        today = date.today().isoformat()
        prompts = [system_prompt(language, today) for language in ("zh", "en")]
        pool = ThreadPoolExecutor(1, thread_name_prefix="llm-start")
        try:
            models_ready = pool.submit(build_chat_models, config, embedded, warm_prompts=prompts)
            embedder = load_embedder(config.embedding_model_name)
            memory = open_memory(config, embedder)
            toolbox = Toolbox.build(config, embedder, memory, extra_tools)
            models = models_ready.result()
        except BaseException:
            if embedded is not None:
                embedded.stop()  # also ends a wait for it in the thread at once
            raise
        finally:
            pool.shutdown()
        return cls(config, models, embedder, memory, toolbox=toolbox)

    def new_conversation(self, user_id: str, session_id: str | None = None) -> Conversation:
        """A fresh session for ``user_id`` (raises ``InvalidIdError`` for a bad id)."""
        if session_id is None:
            return Conversation(user_id, max_turns=self.config.history_turns)
        return Conversation(user_id, session_id=session_id, max_turns=self.config.history_turns)

    def check_text(self, text: object) -> str:
        """The user's text, stripped, or :class:`InputError` if it is empty, not text, or too long."""
        if not isinstance(text, str):
            raise InputError("text must be a string")
        text = text.strip()
        if not text:
            raise InputError("empty input: say or type something")
        if len(text) > self.config.max_input_chars:
            raise InputError(f"input too long: {len(text)} characters (limit {self.config.max_input_chars})")
        return text

    async def stream_turn(
        self, conv: Conversation, text: str, commit: asyncio.Event | None = None, turn_id: str | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn, yielding events as they happen; the last is :class:`TurnDone`.

        If the caller stops iterating (barge-in, disconnect), the LLM request is cancelled and
        nothing is recorded: the caller then calls :meth:`record_interrupted` with what was heard.
        With ``commit``, the turn is speculative: it runs, but is recorded in history and memory
        only after ``commit`` is set; cancelled before that, it leaves no trace.
        """
        text = self.check_text(text)
        start = time.perf_counter()
        turn_id = turn_id or uuid.uuid4().hex[:12]
        state_in = {
            "turn_id": turn_id,
            "query": text,
            "user_id": conv.user_id,
            "session_id": conv.session_id,
            "language": detect_language(text),
            "messages": conv.messages(),
        }
        client = conv.client.take_turn()
        final: dict[str, Any] = {}
        modes: list[StreamMode] = ["messages", "custom", "values"]
        # A dict of state fields is LangGraph's documented input (it fills in the state's defaults itself);
        # its overloads name only the state class, TurnState, so the input is ignored for this one call.
        async for mode, payload in self.graph.astream(  # type: ignore[call-overload]
            state_in, context=replace(self.context, commit=commit, client=client), stream_mode=modes
        ):
            if mode == "messages":
                chunk, meta = payload
                if meta.get("langgraph_node") == "respond" and isinstance(chunk, AIMessageChunk) and chunk.content:
                    yield TextDelta(replace_lone_surrogates(str(chunk.content)))  # what is heard must encode
            elif mode == "custom":
                event = payload.get("event")
                if event == "route":
                    yield RouteChosen(payload["route"], payload["reason"])
                elif event == "sources":
                    yield SourcesFound([Source(**s) for s in payload["sources"]])
                elif event == "delta":
                    yield TextDelta(payload["delta"])
            elif mode == "values":
                final = asdict(payload) if is_dataclass(payload) and not isinstance(payload, type) else dict(payload)
        metrics = dict(final.get("metrics", {}))
        metrics["total"] = round((time.perf_counter() - start) * 1000, 1)
        result = TurnResult(
            turn_id=turn_id,
            text=final.get("answer", ""),
            route=final.get("route", ""),
            route_reason=final.get("route_reason", ""),
            sources=[s if isinstance(s, Source) else Source(**s) for s in final.get("sources", [])],
            metrics=metrics,
            error=final.get("error", ""),
        )
        calls = tuple(c if isinstance(c, ToolCall) else ToolCall(**c) for c in final.get("tool_calls") or ())
        if calls:  # the answer waits for the client to run its tools (agent/client_tools.py)
            conv.client.pending = PendingCalls(turn_id, text, calls, tuple(client.tail(text)))
        else:
            conv.record(text, result.text)
        log.info("turn %s user=%s route=%s metrics=%s", turn_id, conv.user_id, result.route, metrics,
                 extra={"session_id": conv.session_id, "turn_id": turn_id, "user_id": conv.user_id,
                        "route": result.route})
        yield TurnDone(result)

    async def run_turn(self, conv: Conversation, text: str) -> TurnResult:
        """Run one turn to the end and return its result."""
        async for event in self.stream_turn(conv, text):
            if isinstance(event, TurnDone):
                return event.result
        raise RuntimeError("turn ended without a result")  # pragma: no cover - stream_turn always ends so

    def record_interrupted(self, conv: Conversation, user_text: str, heard: str, turn_id: str = "",
                           completed: bool = False) -> None:
        """Record a turn cut short: history and memory keep only what the user heard.

        ``completed`` means :meth:`stream_turn` had finished (and recorded the whole reply)
        before the cut, e.g. while its audio was still playing: that record is replaced.
        A turn that ended in calls of the client's tools said nothing yet: its answer, from the
        tools' outputs, is the turn that gets recorded.
        """
        pending = conv.client.pending
        if pending is not None and pending.turn_id == turn_id:
            return
        if completed:
            conv.replace_last(user_text, heard)
        else:
            conv.record(user_text, heard)
        self.writer.submit(TurnRecord(conv.user_id, conv.session_id, user_text, heard, interrupted=True,
                                      turn_id=turn_id, replaces=completed))

    def forget_turn(self, conv: Conversation, user_text: str, turn_id: str) -> None:
        """Take back a recorded turn the user never heard (it merges into their next words)."""
        conv.drop_last(user_text)
        self.writer.submit(TurnRecord(conv.user_id, conv.session_id, user_text, "", turn_id=turn_id,
                                      replaces=True, forget=True))

    async def suggest_followups(self, user_text: str, answer: str) -> list[str]:
        """Three follow-up questions for an exchange, or ``[]`` (asked of the chat model)."""
        return await suggest_followups(self.models.chat, user_text, answer)

    @property
    def client_tools_supported(self) -> bool:
        """Whether a session's client may declare its own tools: the model must call tools (the embedded one cannot)."""
        return not self.config.uses_embedded_llm

    def describe(self) -> dict[str, Any]:
        """What the agent runs on, for ``/healthz``: the model, whether it is embedded, the tools."""
        return {"llm": {"model": self.models.model_name, "embedded": self.models.embedded is not None},
                "tools": self.registry.names()}

    def memory_writes(self) -> dict[str, int]:
        """Turns written to long-term memory so far, failed, and still queued."""
        return {"saved": self.writer.saved, "failed": self.writer.failed, "pending": self.writer.pending}

    def warm_user(self, user_id: str) -> None:
        """Load a user's memory indexes ahead of their first turn (blocking: run it in a thread).

        Only a store shared between instances (PostgreSQL) builds them lazily; otherwise a no-op.
        """
        if getattr(self.memory, "shared", False):
            self.memory.preload(user_id)

    def ping_memory(self) -> None:
        """Raise if the memory store's database does not answer (readiness probes; blocking)."""
        # A record store without a database behind it (tests' in-memory ones) has no ping: nothing to ask.
        ping = getattr(getattr(self.memory, "records", None), "ping", None)
        if ping is not None:
            ping()

    async def aclose(self) -> None:
        """Save pending memories and stop the embedded LLM, if any."""
        await self.writer.aclose()
        self.models.close()
