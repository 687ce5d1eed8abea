"""The local router with its real default embedder (USE multilingual) and the real tools: each route, both languages.

bench/routing.py measures accuracy on a labelled set; these pin everyday turns of each kind, the
Chinese greetings that used to go to web_search (and made the offline first turn slow), and the
cue conflicts that were fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentSettings
from agent.embedding import load_embedder
from agent.graph.router import LocalRouter
from agent.memory import MemoryStore
from agent.tools import ToolDeps, build_registry


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> LocalRouter:
    """The router as the agent builds it offline: defaults, no Serper key (web_search answers from ./knowledge)."""
    config = AgentSettings(memory_dir=str(tmp_path_factory.mktemp("memory")))
    retrieval = load_embedder(config.embedding_model_name)
    registry = build_registry(ToolDeps(config, retrieval, MemoryStore(Path(config.memory_dir), embedder=retrieval)))
    return LocalRouter(registry, load_embedder(config.router_embedding_model_name), config.router_threshold,
                       config.router_margin)


ROUTES = {
    "direct": [
        "你好", "你好，请用一句话介绍你自己", "早上好", "你是谁", "晚安", "给我讲一个笑话", "怎么才能睡得更好？",
        "为什么天空是蓝色的", "hello", "who are you", "tell me a joke", "How can I sleep better?",
        "why is the sky blue", "good night",
    ],
    "web_search": [
        "今天上海的天气怎么样", "最近有什么新闻", "卢浮宫几点开门", "法国现在的总统是谁",
        "what's the weather in Paris today", "any news about the election", "what are the opening hours of the Louvre",
        "who is the current president of France",
    ],
    "memory_recall": [
        "你还记得我说过我喜欢什么吗", "我的爱好是什么", "我女儿叫什么名字来着", "我们昨天聊了什么",
        "do you remember what I said about my job", "what are my hobbies", "what did we talk about last time",
    ],
    "clock": [
        "现在几点了", "今天是几月几号", "今天星期几", "告诉我现在的时间",
        "what time is it", "what's today's date", "what day is it today", "do you know the current time",
    ],
}


@pytest.mark.parametrize(("text", "route"), [(t, r) for r, texts in ROUTES.items() for t in texts])
def test_everyday_turns_take_their_route(router: LocalRouter, text: str, route: str) -> None:
    decision = router.decide(text)
    assert decision.route == route, (decision.reason, decision.scores)


@pytest.mark.parametrize("text", ["你好", "你好呀", "早上好", "你好，请用一句话介绍你自己", "谢谢你，再见", "最近好吗"])
def test_chinese_greetings_are_plain_conversation(router: LocalRouter, text: str) -> None:
    # With MiniLM (English only) these cleared web_search's threshold: offline that put a ~300-token
    # reference block in the first turn's prompt.
    decision = router.decide(text)
    assert decision.route == "direct", (decision.reason, decision.scores)
    assert decision.scores["web_search"] < AgentSettings().router_threshold + 0.2


@pytest.mark.parametrize(("text", "not_route"), [
    ("怎么记住别人的名字？", "memory_recall"),        # 记住: memorising, not recall
    ("How can I remember people's names?", "memory_recall"),
    ("故宫几点开门", "clock"),                          # opening hours are web_search's
    ("what's today's date", "web_search"),            # "today's" is web_search's cue, the date is the clock's
])
def test_cue_conflicts_resolve_to_the_right_tool(router: LocalRouter, text: str, not_route: str) -> None:
    assert router.decide(text).route != not_route


def test_routing_shares_memorys_embedder_so_a_turn_is_embedded_once() -> None:
    config = AgentSettings()
    assert config.router_embedding_model_name == config.memory_embedding_model_name
    assert load_embedder(config.router_embedding_model_name) is load_embedder(config.memory_embedding_model_name)
