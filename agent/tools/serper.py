"""A small client for the Serper Google-search API (``POST {base}/search``)."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from agent.tools.base import Source


class SearchError(RuntimeError):
    """Serper could not be reached or answered something unusable."""


@dataclass(frozen=True)
class SearchResults:
    """What a search found: the direct answer (if any) and the organic results."""

    answer: str | None
    results: list[Source]


def _direct_answer(payload: dict[str, object]) -> str | None:
    box = payload.get("answerBox")
    if isinstance(box, dict):
        for key in ("answer", "snippet"):
            if isinstance(box.get(key), str) and box[key]:
                return str(box[key])
    graph = payload.get("knowledgeGraph")
    if isinstance(graph, dict) and isinstance(graph.get("description"), str):
        title = graph.get("title")
        return f"{title}: {graph['description']}" if isinstance(title, str) else str(graph["description"])
    return None


def parse_results(payload: object) -> SearchResults:
    """Read ``answerBox``, ``knowledgeGraph`` and ``organic[]`` defensively (fields may be missing)."""
    if not isinstance(payload, dict):
        raise SearchError("Serper answered with something that is not a JSON object")
    organic = payload.get("organic")
    results: list[Source] = []
    for item in organic if isinstance(organic, list) else []:
        if not isinstance(item, dict):
            continue
        title, link, snippet = item.get("title"), item.get("link"), item.get("snippet")
        if isinstance(link, str) and isinstance(snippet, str) and snippet:
            results.append(Source(str(title or link), link, snippet))
    return SearchResults(_direct_answer(payload), results)


def search(
    base_url: str, api_key: str, query: str, *, num: int, language: str, timeout_s: float
) -> SearchResults:
    """Run one search. Raises :class:`SearchError` on any failure, never leaking the key."""
    gl, hl = ("cn", "zh-cn") if language == "zh" else ("us", "en")
    try:
        response = requests.post(
            f"{base_url.rstrip('/')}/search",
            headers={"X-API-KEY": api_key, "Content-Type": "application/json"},
            json={"q": query, "num": num, "gl": gl, "hl": hl},
            timeout=timeout_s,
        )
    except requests.Timeout:
        # The same bound as the caller's wait_for: whichever fires first, the user hears one reason.
        raise SearchError("it timed out") from None
    except requests.RequestException as exc:
        raise SearchError(f"search request failed: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise SearchError(f"search failed with HTTP {response.status_code}")
    try:
        payload = response.json()
    except ValueError:
        raise SearchError("search answered malformed JSON") from None
    return parse_results(payload)
