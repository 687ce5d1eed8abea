"""Chat model construction, and the bound on the wait for a reply's first token.

Every model is reached through langchain-openai's ``ChatOpenAI``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from agent.config import AgentSettings
from agent.embedded_llm import EmbeddedLLMServer, launch_embedded

log = logging.getLogger(__name__)
T = TypeVar("T")

@dataclass
class ChatModels:
    """The chat model for replies, and the embedded server behind it when there is one."""

    chat: BaseChatModel
    model_name: str
    base_url: str
    embedded: EmbeddedLLMServer | None = None

    def close(self) -> None:
        """Stop the embedded server, if any."""
        if self.embedded is not None:
            self.embedded.stop()


def build_chat_models(config: AgentSettings, embedded: EmbeddedLLMServer | None = None,
                      warm_prompts: Sequence[str] = ()) -> ChatModels:
    """Connect to the configured LLM, starting the embedded one when nothing else is configured.

    ``embedded`` is one already launched by :func:`launch_embedded`; ``warm_prompts`` (the system
    prompts) are read by the embedded model once, so that its prompt cache holds them.
    """
    if embedded is None:
        embedded = launch_embedded(config)
    if embedded is not None:
        embedded.wait_ready()
        embedded.warm_up(list(warm_prompts))
        base_url, model_name, api_key = embedded.base_url, embedded.model_name, embedded.api_key
    else:
        base_url, model_name = config.llm_base_url, config.lm_model_name
        # The OpenAI client refuses an empty key; a local server without auth accepts any.
        api_key = config.lm_api_key or "not-needed"
    chat = ChatOpenAI(
        model=model_name,
        base_url=base_url,
        api_key=SecretStr(api_key),  # what ChatOpenAI turns a str into; also keeps it out of repr
        temperature=config.lm_temperature,
        # Sent as the classic ``max_tokens``: DeepSeek, llama.cpp and vLLM all read it,
        # while ``max_completion_tokens`` (ChatOpenAI's default field) is OpenAI-only.
        extra_body={"max_tokens": config.lm_max_tokens},
        timeout=config.lm_timeout_s,
        max_retries=config.lm_max_retries,
        streaming=True,
    )
    log.info("LLM: %s at %s", model_name, base_url)
    return ChatModels(chat=chat, model_name=model_name, base_url=base_url, embedded=embedded)


class FirstTokenTimeout(TimeoutError):
    """The model sent no word of its reply within ``--lm_first_token_timeout_s``."""


async def bounded_first_token(
    chunks: AsyncIterator[T], has_content: Callable[[T], bool], first_token_s: float,
    notice_s: float = 0.0, on_notice: Callable[[], None] | None = None,
) -> AsyncGenerator[T, None]:
    """Pass ``chunks`` through, but raise :class:`FirstTokenTimeout` if none has content within ``first_token_s``.

    The client's own timeout bounds each read, and retries multiply it: 2 x 30 s by default, far
    too long for a voice user. ``on_notice`` is called once if ``notice_s`` pass first.

    The stream is closed (its HTTP request cancelled) however this ends.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + first_token_s
    notice_at = loop.time() + notice_s if notice_s > 0 and on_notice is not None and notice_s < first_token_s else None
    iterator = aiter(chunks)
    waiting = True
    try:
        while True:
            step = asyncio.ensure_future(anext(iterator))
            try:
                while waiting and not step.done():
                    until = notice_at if notice_at is not None else deadline
                    await asyncio.wait({step}, timeout=max(0.0, until - loop.time()))
                    if step.done():
                        break
                    if notice_at is not None and on_notice is not None:  # notice_at is only set with one
                        notice_at = None
                        on_notice()
                    else:
                        raise FirstTokenTimeout(f"no reply within {first_token_s:g} s")
                chunk = await step
            except StopAsyncIteration:
                return
            finally:
                if not step.done():
                    step.cancel()
                    await asyncio.wait({step})  # let the cancelled read finish (never raises)
            if waiting and has_content(chunk):
                waiting = False
            yield chunk
    finally:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
