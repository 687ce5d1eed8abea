"""Routing: pick ``direct`` or a registered tool for each turn, fast.

Policy (README "How routing works"):
1. Lexical cues. A tool whose cue matches the text is a strong candidate.
2. Embedding similarity of the text to each tool's example utterances (and to
   examples of plain conversation for ``direct``); no LLM call, a few ms.
3. The local decision is *confident* when a cue matches, or when the best route's
   similarity clears ``threshold`` with a lead of at least ``margin``, or when no
   tool comes near. Only an unsure decision may ask the LLM (tool calling), and
   only when the model supports tools; otherwise the best local guess stands.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from agent.embedding import Embedder
from agent.graph.prompts import ROUTER_PROMPT
from agent.tools.registry import DIRECT_ROUTE, ToolRegistry

log = logging.getLogger(__name__)

DIRECT_EXAMPLES = (
    "hello, how are you",
    "tell me a joke",
    "explain how photosynthesis works",
    "what is the meaning of life",
    "can you help me write a short poem",
    "thank you, that's all",
    "why is the sky blue",
    "你好",
    "给我讲个笑话",
    "解释一下什么是量子力学",
    "谢谢你",
    "帮我写一首关于春天的诗",
    # Greetings, questions about Parley itself and small talk: without these a Chinese greeting came
    # closest to memory_recall's "我叫什么名字" or to web_search (bench.routing).
    "introduce yourself",
    "what should I call you",
    "hey, are you there",
    "I'm so tired today",
    "any tips for losing weight",
    "how do I make dumplings",
    "let's just chat for a bit",
    "good night, see you tomorrow",
    "tell me a fun fact",
    # Advice and general knowledge, which the model answers itself: most everyday questions are like
    # these, and without them "how long ..." and "what should I bring ..." came closest to a tool.
    "is it healthy to eat eggs every day",
    "how far is the moon from the earth",
    "what can I do when I'm bored",
    "what should I bring on a hiking trip",
    "what's the best way to learn to swim",
    "嗨，在吗",
    "介绍一下你自己",
    "我该怎么称呼你",
    "我今天好累啊",
    "有什么减肥的建议",
    "饺子怎么包",
    "陪我聊聊天吧",
    "晚安，明天见",
    "你好吗",
    "说个冷知识",
    "你最近忙吗",
    "每天吃鸡蛋健康吗",
    "地球离月亮有多远",
    "无聊的时候可以做什么",
    "去爬山要带什么",
    "学游泳最好的方法是什么",
)
"""Plain conversation that needs no tool."""

CLEARLY_DIRECT_GAP = 0.15
"""A best tool this far under the threshold means the turn is plain conversation."""


@dataclass(frozen=True)
class RouteDecision:
    """The router's choice and why it made it."""

    route: str
    reason: str
    confident: bool
    scores: dict[str, float]


class LocalRouter:
    """Cue + embedding-similarity router; needs no LLM call."""

    def __init__(self, registry: ToolRegistry, embedder: Embedder, threshold: float, margin: float) -> None:
        self._registry = registry
        self._embedder = embedder
        self._threshold = threshold
        self._margin = margin
        self._routes = [DIRECT_ROUTE, *registry.names()]
        examples = [DIRECT_EXAMPLES, *(tool.examples for tool in registry)]
        self._owner = np.concatenate([np.full(len(ex), i) for i, ex in enumerate(examples)])
        self._vectors = embedder.encode([text for ex in examples for text in ex])

    def scores(self, text: str) -> dict[str, float]:
        """Best similarity of ``text`` to each route's examples."""
        sims = self._vectors @ self._embedder.encode([text])[0]
        best = np.full(len(self._routes), -1.0)
        np.maximum.at(best, self._owner, sims)
        return {route: float(s) for route, s in zip(self._routes, best, strict=True)}

    def decide(self, text: str) -> RouteDecision:
        """Route ``text`` without an LLM."""
        cued = [tool.name for tool in self._registry if tool.cue_matches(text)]
        return choose_route(self.scores(text), cued, self._threshold, self._margin)


def choose_route(scores: dict[str, float], cued: list[str], threshold: float, margin: float) -> RouteDecision:
    """The local decision from a turn's route similarities and the tools whose cues matched it.

    Apart from :class:`LocalRouter` so that ``bench.routing`` can tune ``threshold`` and
    ``margin`` on stored scores with exactly the rule the router applies.
    """
    if cued:
        route = max(cued, key=scores.__getitem__)
        return RouteDecision(route, f"cue matched ({', '.join(cued)})", True, scores)
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    best, second = ranked[0], ranked[1]
    lead = scores[best] - scores[second]
    best_tool = next(r for r in ranked if r != DIRECT_ROUTE)
    if best != DIRECT_ROUTE and scores[best] >= threshold and lead >= margin:
        return RouteDecision(best, f"similar to {best} examples ({scores[best]:.2f})", True, scores)
    if scores[best_tool] < threshold - CLEARLY_DIRECT_GAP:
        return RouteDecision(DIRECT_ROUTE, f"no tool is close ({best_tool} {scores[best_tool]:.2f})", True, scores)
    if best == DIRECT_ROUTE and lead >= margin:
        return RouteDecision(DIRECT_ROUTE, f"plain conversation ({scores[best]:.2f})", True, scores)
    guess = best if scores[best] >= threshold else DIRECT_ROUTE
    return RouteDecision(guess, f"unsure ({best} {scores[best]:.2f}, lead {lead:.2f})", False, scores)


class LLMRouter:
    """Asks a tool-calling model to choose, for the turns the local router is unsure about."""

    def __init__(self, chat: BaseChatModel, registry: ToolRegistry, timeout_s: float = 2.5) -> None:
        specs = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": {
                        "type": "object",
                        "properties": {"query": {"type": "string", "description": "What to look for."}},
                        "required": ["query"],
                    },
                },
            }
            for tool in registry
        ]
        self._chat = chat.bind_tools(specs, tool_choice="auto")
        self._registry = registry
        self._timeout_s = timeout_s

    async def decide(self, text: str) -> str | None:
        """A tool name, ``direct``, or None when the model failed or timed out."""
        try:
            reply = await asyncio.wait_for(
                self._chat.ainvoke([SystemMessage(ROUTER_PROMPT), HumanMessage(text)]), self._timeout_s
            )
        except Exception as exc:  # any failure falls back to the local guess
            log.info("LLM router unavailable (%s); keeping the local guess", type(exc).__name__)
            return None
        for call in getattr(reply, "tool_calls", None) or []:
            if call.get("name") in self._registry:
                return str(call["name"])
        return DIRECT_ROUTE
