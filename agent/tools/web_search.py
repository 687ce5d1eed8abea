"""``web_search``: Serper search grounded by embedding retrieval, or the local knowledge folder."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.config import AgentSettings
from agent.embedding import Embedder
from agent.tools import serper
from agent.tools.base import Source, Tool, ToolContext, ToolDeps, ToolResult
from agent.tools.knowledge import KnowledgeBase
from agent.tools.retrieval import Chunk, ChunkIndex, format_reference, split_document

SEARCH_UNAVAILABLE = (
    "Web search was unavailable for this turn ({reason}). Say so briefly, then answer from what you know."
)
KNOWLEDGE_ONLY = (
    "Web search is not configured (no SERPER_API_KEY), so the reference comes from the local knowledge "
    "folder. Mention that briefly."
)


class WebSearchTool(Tool):
    """Searches the web with Serper and keeps the chunks most relevant to the question."""

    name = "web_search"
    description = "Search the web for current facts, news, prices, weather, people, or anything recent."
    examples = (
        "search the web for the latest news about electric cars",
        "what is the weather in Shanghai today",
        "who won the football match last night",
        "look up the current price of bitcoin",
        "what's new in Python 3.13",
        "find information about the Eiffel Tower opening hours",
        "帮我搜索一下最新的新闻",
        "今天北京的天气怎么样",
        "查一下特斯拉的股价",
        "最近有什么科技新闻",
        "网上说的这个消息是真的吗",
        "who is the prime minister of Japan",
        "show me today's headlines",
        "is there a good coffee shop near here",
        "how much is a flight to Paris",
        "when is the World Cup final",
        "日本首相是谁",
        "今天有什么头条",
        "这附近有没有好的咖啡店",
        "飞巴黎的机票多少钱",
        "世界杯决赛是什么时候",
        "博物馆周一开门吗",
    )
    cues = (
        r"\b(search|google|look (it |that )?up|latest|news|today'?s|current(ly)?|recent|weather|price of"
        r"|opening hours)\b",
        r"搜索|搜一下|查一下|查查|上网|网上|最新|新闻|今天.*(天气|股价)|天气|股价|汇率"
        r"|几点(开门|关门|营业)|营业时间|开放时间|开放吗",
    )
    instructions = (
        "Answer the question using the numbered reference material. Mention where a fact comes from "
        "in a few words when it helps."
    )

    def __init__(self, config: AgentSettings, embedder: Embedder) -> None:
        self._config = config
        self._embedder = embedder
        self._knowledge: KnowledgeBase | None = None
        if not config.web_search_enabled:
            self._knowledge = KnowledgeBase(Path(config.knowledge_dir), embedder)

    @classmethod
    def create(cls, deps: ToolDeps) -> Tool:
        """The tool, from the agent's settings and embedder."""
        return cls(deps.config, deps.embedder)

    async def run(self, query: str, ctx: ToolContext) -> ToolResult:
        """Serper results (or the knowledge folder without a key), best passages as reference text."""
        if self._knowledge is not None:
            hits = await asyncio.to_thread(self._knowledge.search, query, self._config.retrieval_top_k)
            text, sources = format_reference(hits)
            return ToolResult(text=text, sources=sources, note=KNOWLEDGE_ONLY)
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._search_and_retrieve, query, ctx.language),
                timeout=self._config.search_timeout_s,
            )
        except TimeoutError:
            return ToolResult(text="", note=SEARCH_UNAVAILABLE.format(reason="it timed out"))
        except serper.SearchError as exc:
            return ToolResult(text="", note=SEARCH_UNAVAILABLE.format(reason=str(exc)))

    def _search_and_retrieve(self, query: str, language: str) -> ToolResult:
        cfg = self._config
        assert cfg.serper_api_key  # web_search_enabled
        found = serper.search(
            cfg.serper_url, cfg.serper_api_key, query,
            num=cfg.search_results, language=language, timeout_s=cfg.search_timeout_s,
        )
        chunks: list[Chunk] = []
        for result in found.results:
            chunks.extend(split_document(result.snippet, result))
        hits = ChunkIndex(self._embedder, chunks).search(query, cfg.retrieval_top_k)
        text, sources = format_reference(hits)
        if found.answer:
            text = f"Direct answer from the search engine: {found.answer}\n{text}".strip()
        if not text:
            return ToolResult(text="", note=SEARCH_UNAVAILABLE.format(reason="it found nothing"))
        return ToolResult(text=text, sources=sources or [Source("search answer", "", found.answer or "")])
