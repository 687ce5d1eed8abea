"""Chat model construction: every model is reached through langchain-openai's ``ChatOpenAI``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from agent.config import AgentConfig
from agent.embedded_llm import EmbeddedLLMServer, launch_embedded
from agent.graph.prompts import system_prompt

log = logging.getLogger(__name__)

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


def build_chat_models(config: AgentConfig, embedded: EmbeddedLLMServer | None = None) -> ChatModels:
    """Connect to the configured LLM, starting the embedded one when nothing else is configured.

    ``embedded`` is one already launched by :func:`launch_embedded`.
    """
    if embedded is None:
        embedded = launch_embedded(config)
    if embedded is not None:
        embedded.wait_ready()
        today = date.today().isoformat()
        embedded.warm_up([system_prompt("zh", today), system_prompt("en", today)])
        base_url, model_name, api_key = embedded.base_url, embedded.model_name, "embedded"
    else:
        base_url, model_name = config.llm_base_url, config.lm_model_name
        # The OpenAI client refuses an empty key; a local server without auth accepts any.
        api_key = config.lm_api_key or "not-needed"
    chat = ChatOpenAI(
        model=model_name,
        base_url=base_url,
        api_key=api_key,  # type: ignore[arg-type]
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
