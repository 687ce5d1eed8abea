"""Agent-core latency: routing, retrieval, memory-in-prompt, and the embedded LLM's first token.

    .venv/bin/python -m bench.agent_latency [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import time
from pathlib import Path

from bench.common import emit, machine, print_table, summary_ms
from tests.support.paths import ROOT

UTTERANCES = [
    "tell me a joke", "what did I tell you about my sister", "search the latest news about Mars",
    "what time is it", "explain how a rainbow forms", "who won the match last night",
    "你好，最近怎么样", "帮我查一下今天上海的天气", "我上周跟你说了什么", "现在几点了",
    "what's the capital of Japan", "do you remember my favourite food",
]


def bench_routing(agent, rounds: int) -> dict[str, float]:
    router = agent.context.router
    router.decide("warm up")
    samples = []
    for _ in range(rounds):
        for text in UTTERANCES:
            start = time.perf_counter()
            router.decide(text)
            samples.append((time.perf_counter() - start) * 1000)
    return summary_ms(samples)


async def bench_retrieval(agent, rounds: int) -> dict[str, dict[str, float]]:
    from agent.tools.base import ToolContext

    tool = agent.registry.get("web_search")
    ctx = ToolContext("bench", "bench", "en")
    out: dict[str, dict[str, float]] = {}
    for label, query in (("knowledge folder", "what is CleanS2S"), ("knowledge folder zh", "故宫几点开门")):
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            await tool.run(query, ctx)
            samples.append((time.perf_counter() - start) * 1000)
        out[label] = summary_ms(samples)
    return out


async def bench_search_retrieval(embedder, rounds: int) -> dict[str, float]:
    """Serper (fake, instant) + chunking + embedding 8 results + FAISS top-k."""
    from agent.config import AgentSettings
    from agent.tools.base import ToolContext
    from agent.tools.web_search import WebSearchTool
    from tests.support.fakes.serper_server import FAKE_KEY, FakeSerper, SearchReply, organic

    results = [(f"Result {i}", f"https://example.org/{i}",
                f"Snippet number {i} about the Mars rover landing and what it found in the crater. " * 2)
               for i in range(8)]
    with FakeSerper() as serper:
        serper.default = SearchReply(organic(*results))
        tool = WebSearchTool(AgentSettings(serper_url=serper.url, serper_api_key=FAKE_KEY), embedder)
        ctx = ToolContext("bench", "bench", "en")
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            await tool.run("latest news about the Mars rover", ctx)
            samples.append((time.perf_counter() - start) * 1000)
    return summary_ms(samples)


async def bench_embedded_ttft(rounds: int) -> dict[str, float]:
    from langchain_core.messages import HumanMessage, SystemMessage

    from agent.config import AgentSettings
    from agent.llm import build_chat_models

    models = build_chat_models(AgentSettings(lm_max_tokens=32))
    samples, rates = [], []
    try:
        for i in range(rounds):
            start = time.perf_counter()
            first = None
            count = 0
            async for chunk in models.chat.astream([SystemMessage("Answer in one short sentence."),
                                                    HumanMessage(f"Question {i}: why is the sky blue?")]):
                if chunk.content:
                    count += 1
                    first = first or time.perf_counter()
            end = time.perf_counter()
            if first is not None:
                samples.append((first - start) * 1000)
                if count > 1:
                    rates.append((count - 1) / (end - first))
    finally:
        models.close()
    result = summary_ms(samples)
    result["tokens_per_s"] = round(sum(rates) / len(rates), 1) if rates else 0.0
    return result


async def amain(args: argparse.Namespace) -> dict[str, object]:
    import tempfile

    from langchain_openai import ChatOpenAI

    from agent.config import AgentSettings
    from agent.llm import ChatModels
    from agent.runtime import Agent

    rounds = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        config = AgentSettings(memory_dir=str(Path(tmp) / "mem"), knowledge_dir=str(ROOT / "knowledge"),
                             lm_model_url="http://127.0.0.1:9/v1", lm_tool_routing="off")
        from agent.embedding import load_embedder
        from agent.memory import MemoryStore

        embedder = load_embedder(config.embedding_model_name)
        chat = ChatOpenAI(model="none", base_url=config.llm_base_url, api_key="none")  # type: ignore[arg-type]
        with contextlib.redirect_stderr(io.StringIO()):
            agent = Agent(config, ChatModels(chat, "none", config.llm_base_url), embedder,
                          MemoryStore(config.memory_dir, embedder=embedder))
        routing = bench_routing(agent, rounds)
        retrieval = await bench_retrieval(agent, rounds)
        retrieval["web search (fake Serper) + retrieval"] = await bench_search_retrieval(embedder, rounds)
    ttft = await bench_embedded_ttft(3 if args.quick else 8)
    result = {"machine": machine(), "routing_ms": routing, "retrieval_ms": retrieval, "embedded_llm_ttft_ms": ttft}
    if not args.json:
        print_table("Routing (local, no LLM call), ms", [routing])
        print_table("Retrieval, ms", [{"what": k, **v} for k, v in retrieval.items()])
        print_table("Embedded LLM (SmolLM2-135M Q4_1, llama.cpp), time to first token", [ttft])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Fewer rounds (under a minute).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    emit(asyncio.run(amain(args)), args.json)


if __name__ == "__main__":
    main()
