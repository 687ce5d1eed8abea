"""The models Parley ships with actually run: the embedder embeds and the LLM generates."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest
from langchain_core.messages import HumanMessage

from agent.config import AgentSettings
from agent.embedded_llm import EmbeddedLLMServer
from agent.embedded_models import EMBEDDED_MODELS, get_embedded_model, join_chunks
from agent.graph.prompts import system_prompt
from agent.llm import build_chat_models
from agent.prompt_slots import slot_file_name
from tests.support.paths import ROOT


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
    models = build_chat_models(AgentSettings(lm_max_tokens=24))
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


def _chunks(tmp_path, parts: list[bytes]):
    paths = []
    for i, data in enumerate(parts):
        path = tmp_path / f"part{i}"
        path.write_bytes(data)
        paths.append(path)
    return paths, hashlib.sha256(b"".join(parts)).hexdigest()


def test_join_chunks_joins_once_and_reuses(tmp_path):
    chunks, sha = _chunks(tmp_path, [b"GGUF" + os.urandom(3000), os.urandom(5000), os.urandom(17)])
    target = tmp_path / "cache" / "model.gguf"
    assert join_chunks(chunks, target, sha) == target
    assert target.read_bytes() == b"".join(c.read_bytes() for c in chunks)
    first = target.stat().st_mtime_ns
    time.sleep(0.01)
    join_chunks(chunks, target, sha)
    assert target.stat().st_mtime_ns == first, "a verified file is reused, not joined again"
    target.write_bytes(b"truncated")  # e.g. a disk that filled up, or someone's edit
    join_chunks(chunks, target, sha)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha


def test_join_chunks_refuses_a_wrong_hash_and_leaves_nothing(tmp_path):
    chunks, _ = _chunks(tmp_path, [os.urandom(1000), os.urandom(1000)])
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ValueError, match="SHA-256"):
        join_chunks(chunks, target, "0" * 64)
    assert list(target.parent.iterdir()) == []


def test_unknown_embedded_model_is_a_clear_error():
    with pytest.raises(ValueError, match=r"qwen2\.5-0\.5b"):
        get_embedded_model("gpt-5")


def test_every_catalogued_model_is_installed():
    for model in EMBEDDED_MODELS.values():
        path = model.locate()
        with path.open("rb") as f:
            assert f.read(4) == b"GGUF", model.key


def test_a_broken_model_file_is_a_clear_start_up_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    server = EmbeddedLLMServer("smollm2-135m", model_path=bad)
    with pytest.raises(RuntimeError, match="exited at start-up"):
        server.start(timeout_s=60)


@pytest.mark.slow
def test_embedded_llm_child_does_not_outlive_parley():
    # A parent that dies without stopping it (kill -9, a crash): its child must go too.
    script = textwrap.dedent("""
        import os
        from agent.embedded_llm import EmbeddedLLMServer
        server = EmbeddedLLMServer("smollm2-135m").start()
        print(server.pid, flush=True)
        os._exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    child = int(proc.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 15
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the embedded LLM outlived its parent"
        time.sleep(0.1)


def test_sentence_transformers_embedder_runs_torch_with_one_thread_and_restores_it(monkeypatch):
    import torch

    from agent.embedding import SentenceTransformerEmbedder, _minilm_dir, embed_threads

    # The default MiniLM runs in numpy (tests/test_minilm.py); other folders still run on torch.
    inner = SentenceTransformerEmbedder(_minilm_dir())
    assert inner.threads == 1
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


def test_llm_threads_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("PARLEY_LLM_THREADS", raising=False)
    assert EmbeddedLLMServer("smollm2-135m")._threads == 2
    monkeypatch.setenv("PARLEY_LLM_THREADS", "1")
    assert EmbeddedLLMServer("smollm2-135m")._threads == 1
    assert EmbeddedLLMServer("smollm2-135m", threads=3)._threads == 3



def _chat(server: EmbeddedLLMServer, system: str, user: str, key: str | None) -> dict:
    body = {"model": server.model_name, "max_tokens": 1,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{server.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_system_prompts_are_read_once_then_restored_at_later_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLEY_CACHE_DIR", str(tmp_path))
    prompts = [system_prompt("zh", "2026-12-03"), system_prompt("en", "2026-12-03")]
    first = EmbeddedLLMServer("smollm2-135m").start()
    try:
        assert first.warm_up(prompts) == {"restored": 0, "read": 2}
    finally:
        first.stop()
    saved = sorted((tmp_path / "llm-slots").glob("*.bin"))
    assert len(saved) == 2

    second = EmbeddedLLMServer("smollm2-135m").start()
    try:
        assert second.warm_up(prompts) == {"restored": 2, "read": 0}
        # The restored state is used: a turn under the Chinese prompt reads only its own new tokens.
        reply = _chat(second, prompts[0], "你好", second.api_key)
        assert reply["timings"]["cache_n"] >= 50, reply["timings"]
        assert reply["timings"]["prompt_n"] < 20, reply["timings"]
        # Another day's prompt is another file.
        assert second.warm_up([system_prompt("zh", "2026-12-04"), prompts[1]]) == {"restored": 1, "read": 1}
        # A torn file is read again, not trusted, and saved whole.
        for path in saved:
            path.write_bytes(path.read_bytes()[:1000])
        assert second.warm_up(prompts) == {"restored": 0, "read": 2}
        assert all(path.stat().st_size > 100_000 for path in saved)
    finally:
        second.stop()


@pytest.mark.slow
def test_a_slot_that_cannot_be_saved_is_logged_and_the_other_prompts_still_warm_up(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PARLEY_CACHE_DIR", str(tmp_path))
    prompts = [system_prompt("zh", "2026-12-03"), system_prompt("en", "2026-12-03")]
    server = EmbeddedLLMServer("smollm2-135m").start()
    try:
        # A folder where slot 0's file goes: llama.cpp cannot write that file, even as root (a read-only
        # folder would not stop root), while the folder itself is there and writable.
        names = [slot_file_name(prompt, server._identity()) for prompt in prompts]
        (server.slot_dir / names[0]).mkdir(parents=True)
        with caplog.at_level(logging.WARNING, logger="agent.prompt_slots"):
            assert server.warm_up(prompts) == {"restored": 0, "read": 2}
        assert "slot 0 was not saved" in caplog.text
        assert (server.slot_dir / names[1]).is_file(), "the other prompt was saved"
        # Slot 0 still holds its prompt: a turn under it reads only its own new tokens.
        reply = _chat(server, prompts[0], "你好", server.api_key)
        assert reply["timings"]["cache_n"] >= 50, reply["timings"]
    finally:
        server.stop()


@pytest.mark.slow
def test_the_embedded_model_answers_only_parley(tmp_path, monkeypatch):
    # Its slots hold users' prompts: no other local process may read them or use the model.
    monkeypatch.setenv("PARLEY_CACHE_DIR", str(tmp_path))
    server = EmbeddedLLMServer("smollm2-135m").start()
    try:
        for key in (None, "not-the-key"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _chat(server, "You are terse.", "hi", key)
            assert refused.value.code == 401
        slots = urllib.request.Request(server.base_url.removesuffix("/v1") + "/slots")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(slots, timeout=30)
        assert refused.value.code == 401
        assert _chat(server, "You are terse.", "hi", server.api_key)["choices"]
        assert server.api_key not in " ".join(psutil.Process(server.pid).cmdline())
    finally:
        server.stop()
