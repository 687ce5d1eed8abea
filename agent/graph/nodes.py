"""The graph's nodes. Each does one step of a turn and records its own timing."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import date

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, HumanMessage, SystemMessage
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from agent.client_tools import ClientTurn, calls_of
from agent.graph.context import GraphContext
from agent.graph.prompts import (
    APOLOGY,
    MEMORY_BLOCK,
    NOTE_BLOCK,
    REFERENCE_BLOCK,
    WAIT_NOTICE,
    system_prompt,
)
from agent.graph.state import TurnState
from agent.llm import bounded_first_token
from agent.memory_writer import TurnRecord
from agent.text_safety import replace_lone_surrogates
from agent.tools.base import ToolContext
from agent.tools.memory_recall import format_memories
from agent.tools.registry import DIRECT_ROUTE

log = logging.getLogger(__name__)


CONTINUED = "continuing from the output of the client's tool"

_DATA_TAG = re.compile(r"<\s*/?\s*(?:reference|memories)\s*>", re.IGNORECASE)


def quote_data(text: str) -> str:
    """Untrusted text (web pages, memories) with the data blocks' tags defused.

    So it cannot close its block early or open a block of the other kind.
    """
    return _DATA_TAG.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


async def recall_memories(state: TurnState, runtime: Runtime[GraphContext]) -> dict:
    """Fetch the few memories relevant enough to put in every prompt."""
    ctx, start = runtime.context, time.perf_counter()
    try:
        records = await asyncio.to_thread(
            ctx.memory.search, state.user_id, state.query, ctx.config.memory_prompt_k
        )
    except Exception:  # memory must never cost the user an answer
        log.exception("memory search failed")
        records = []
    # The fused score ranks; only cosine similarity says whether a memory is relevant at all.
    relevant = [r for r in records if r.similarity >= ctx.config.memory_min_score]
    lines = format_memories(relevant).splitlines() if relevant else []
    return {"memories": lines, "metrics": {"memory": _ms_since(start)}}


async def route(state: TurnState, runtime: Runtime[GraphContext]) -> dict:
    """Choose ``direct`` or a tool; ask the LLM only when the local router is unsure."""
    ctx, start = runtime.context, time.perf_counter()
    if ctx.client is not None and ctx.client.exchange:  # the client ran its tool: answer from its output
        get_stream_writer()({"event": "route", "route": DIRECT_ROUTE, "reason": CONTINUED})
        return {"route": DIRECT_ROUTE, "route_reason": CONTINUED, "metrics": {"route": _ms_since(start)}}
    decision = await asyncio.to_thread(ctx.router.decide, state.query)
    chosen, reason = decision.route, decision.reason
    if not decision.confident and ctx.llm_router is not None:
        llm_choice = await ctx.llm_router.decide(state.query)
        if llm_choice is not None:
            chosen, reason = llm_choice, f"LLM chose it; local router was {reason}"
    get_stream_writer()({"event": "route", "route": chosen, "reason": reason})
    return {"route": chosen, "route_reason": reason, "metrics": {"route": _ms_since(start)}}


def next_step(state: TurnState) -> str:
    """The edge out of ``route``: a tool's node, or straight to ``respond``."""
    return "respond" if state.route == DIRECT_ROUTE else f"tool_{state.route}"


def make_tool_node(tool_name: str):
    """A node that runs one registered tool and hands its result to ``respond``."""

    async def run_tool(state: TurnState, runtime: Runtime[GraphContext]) -> dict:
        ctx, start = runtime.context, time.perf_counter()
        tool = ctx.registry.get(tool_name)
        tool_ctx = ToolContext(state.user_id, state.session_id, state.language)
        try:
            result = await tool.run(state.query, tool_ctx)
        except Exception as exc:  # a broken tool degrades to a direct answer
            log.exception("tool %s failed", tool_name)
            return {
                "context_note": f"The {tool_name} tool failed ({type(exc).__name__}); answer without it.",
                "metrics": {"retrieval": _ms_since(start)},
            }
        if result.sources:
            get_stream_writer()({"event": "sources", "sources": [s.as_dict() for s in result.sources]})
        return {
            "context": result.text,
            "context_note": result.note or "",
            "instructions": tool.instructions,
            "sources": result.sources,
            "metrics": {"retrieval": _ms_since(start)},
        }

    run_tool.__name__ = f"run_{tool_name}"
    return run_tool


def build_prompt(state: TurnState, config_prompt: str | None, history_turns: int,
                 client: ClientTurn | None = None) -> list[AnyMessage]:
    """Instructions, then this turn's material, then bounded history and the user's words.

    The first system message holds only Parley's own instructions. Memories and the tool's
    reference, which hold text from users and web pages, go in a second one, each in a
    delimited block that says it is data, with its tags defused so the text cannot close the
    block early (the note on the material, written by Parley, goes with it). A session's client
    (agent/client_tools.py) adds its instructions after Parley's, and may continue a turn whose
    tool it ran: the user's words, the tool call and its output then end the prompt.
    """
    system = config_prompt or system_prompt(state.language, date.today().isoformat())
    if client is not None and client.system_addition():
        system = f"{system}\n\n{client.system_addition()}"
    material = []
    if state.memories:
        material.append(MEMORY_BLOCK.format(memories=quote_data("\n".join(state.memories))))
    if state.context:
        material.append(REFERENCE_BLOCK.format(instructions=state.instructions, context=quote_data(state.context)))
    if state.context_note:
        material.append(NOTE_BLOCK.format(note=state.context_note))
    history = list(state.messages)[-2 * history_turns :] if history_turns > 0 else []
    data = [SystemMessage("\n\n".join(material))] if material else []
    tail = client.tail(state.query) if client is not None else [HumanMessage(state.query)]
    return [SystemMessage(system), *data, *history, *tail]


async def respond(state: TurnState, runtime: Runtime[GraphContext]) -> dict:
    """Stream the LLM's reply; tokens reach the caller through ``stream_mode="messages"``.

    Bounded three ways: no first word within ``lm_first_token_timeout_s`` gives the apology (after
    a short "one moment" at ``lm_wait_notice_s``); a reply longer than ``lm_max_reply_chars`` is
    cut there (a model may ignore ``max_tokens``); the client's timeout bounds each read.
    """
    ctx, start = runtime.context, time.perf_counter()
    config = ctx.config
    prompt = build_prompt(state, config.init_chat_prompt, config.history_turns, ctx.client)
    chat = ctx.client.chat_model(ctx.chat) if ctx.client is not None else ctx.chat
    gathered: AIMessageChunk | None = None  # the tool-call chunks added up: a call comes in pieces
    writer = get_stream_writer()
    pieces: list[str] = []
    metrics: dict[str, float] = {}
    error = ""
    finished = False
    noticed = False

    def notice() -> None:
        nonlocal noticed
        noticed = True
        writer({"event": "delta", "delta": WAIT_NOTICE.get(state.language, WAIT_NOTICE["en"]) + " "})

    chars = 0
    try:
        chunks = bounded_first_token(chat.astream(prompt), lambda c: bool(c.content or c.tool_call_chunks),
                                     config.lm_first_token_timeout_s, config.lm_wait_notice_s, notice)
        try:
            async for chunk in chunks:
                if chunk.tool_call_chunks:
                    gathered = chunk if gathered is None else gathered + chunk
                if chunk.content and "llm_ttft" not in metrics:
                    metrics["llm_ttft"] = _ms_since(start)
                pieces.append(replace_lone_surrogates(str(chunk.content)))  # history and memory must encode
                chars += len(pieces[-1])
                finished = finished or bool(chunk.response_metadata.get("finish_reason"))
                if chars >= config.lm_max_reply_chars or len(pieces) >= config.lm_max_reply_chars:
                    log.warning("reply cut at %d characters (%d chunks): --lm_max_reply_chars", chars, len(pieces))
                    metrics["reply_cut"] = 1.0
                    finished = True
                    break
        finally:
            await chunks.aclose()  # the request is cancelled now, not when the generator is collected
        if not finished:  # the server closed the stream without saying it was done
            raise ConnectionError("stream ended before the reply was finished")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the user gets an apology, the session stays usable
        error = f"LLM failed: {type(exc).__name__}"
        log.warning("%s after %d chunks", error, len(pieces))
        apology = APOLOGY.get(state.language, APOLOGY["en"])
        apology = (" " if pieces and not noticed else "") + apology
        writer({"event": "delta", "delta": apology})
        pieces.append(apology)
    answer = "".join(pieces).strip()
    metrics["llm_total"] = _ms_since(start)
    calls = list(calls_of(gathered)) if gathered is not None and not error else []
    return {
        "answer": answer,
        "error": error,
        "tool_calls": calls,
        "messages": [HumanMessage(state.query), AIMessage(answer)],
        "metrics": metrics,
    }


async def remember(state: TurnState, runtime: Runtime[GraphContext]) -> dict:
    """Hand the finished turn to the memory writer; it is saved in the background."""
    if state.tool_calls:
        return {}  # the answer is still to come, from the client's tool output: that turn is remembered
    if runtime.context.commit is not None:
        await runtime.context.commit.wait()  # a speculative turn: keep it only once the user's turn is confirmed
    runtime.context.remember(
        TurnRecord(state.user_id, state.session_id, state.query, state.answer, turn_id=state.turn_id)
    )
    return {}
