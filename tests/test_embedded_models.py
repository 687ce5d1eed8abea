"""The models Parley ships with actually run: the embedder embeds and the LLM generates."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from langchain_core.messages import HumanMessage

from agent.config import AgentConfig
from agent.llm import build_chat_models


def test_default_embedder_embeds_meaningfully(embedder):
    vectors = embedder.encode(["The cat sat on the mat.", "A cat is sitting on a rug.", "Stock prices fell sharply."])
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_multilingual_embedder_handles_chinese():
    from agent.embedding import load_embedder

    use = load_embedder("use-multilingual")
    v = use.encode(["我住在北京", "我的家在北京市", "今天的股票跌了很多"])
    assert v.shape == (3, 512)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


@pytest.mark.slow
def test_embedded_llm_generates_text():
    models = build_chat_models(AgentConfig(lm_max_tokens=24))
    try:
        assert models.embedded is not None
        chunks = asyncio.run(_stream(models.chat))
        assert len(chunks) > 1, "the embedded model must stream"
        assert "".join(chunks).strip()
    finally:
        models.close()


async def _stream(chat) -> list[str]:
    return [str(c.content) async for c in chat.astream([HumanMessage("Say hello in one short sentence.")])
            if c.content]


def test_embedder_runs_torch_with_one_thread_and_restores_it(embedder, monkeypatch):
    import torch

    from agent.embedding import SentenceTransformerEmbedder, embed_threads

    inner = embedder.inner
    assert isinstance(inner, SentenceTransformerEmbedder) and inner.threads == 1
    seen: list[int] = []
    original = inner._model.encode

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(inner._model, "encode", spy)
    before = torch.get_num_threads()
    inner.encode(["one thread is enough for one query"])
    assert seen == [1] and torch.get_num_threads() == before
    monkeypatch.setenv("PARLEY_EMBED_THREADS", "2")
    assert embed_threads() == 2
    monkeypatch.setenv("PARLEY_EMBED_THREADS", "many")
    assert embed_threads() == 1
