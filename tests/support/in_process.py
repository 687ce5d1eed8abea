"""A real Parley server in the test's own event loop: engines (real or fake) passed in, a fake LLM behind it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from agent.config import AgentSettings
from agent.embedding import Embedder
from agent.llm import build_chat_models
from agent.memory import MemoryStore
from agent.runtime import Agent
from speech.engines.factory import SpeechEngines
from speech.transport.ws_server import ParleyServer, ServerSettings


@dataclass
class RunningServer:
    """A server listening on a free loopback port."""

    server: ParleyServer
    agent: Agent

    @property
    def port(self) -> int:
        return self.server.options.port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running_server(config: AgentSettings, embedder: Embedder, engines: SpeechEngines,
                         memory: MemoryStore | None = None, **options: object) -> AsyncIterator[RunningServer]:
    """Serve until the block ends; every session is closed and the agent's memory flushed after.

    ``memory``: a store to use (e.g. on PostgreSQL) instead of SQLite in ``config.memory_dir``.
    """
    if memory is None:
        memory = MemoryStore(config.memory_dir, embedder=embedder)
    agent = Agent(config, build_chat_models(config), embedder, memory)
    server = ParleyServer(agent, engines, ServerSettings(port=0, **options))  # type: ignore[arg-type]
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve_forever(ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield RunningServer(server, agent)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agent.aclose()


async def eventually(predicate: Callable[[], object], timeout: float = 15.0,  # noqa: ASYNC109
                     interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True
