"""Helpers shared by the benchmark scripts: timing summaries, tables, machine facts, a fake LLM."""

from __future__ import annotations

import json
import os
import platform
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # test-only modules, imported where used
    from tests.support.fakes.openai_server import FakeOpenAI

# Benchmarks run from the repository root as modules (``python -m bench.NAME``); they share the
# tests' server launcher, paths and fakes (tests/support), and the tests never import bench.


def summary_ms(samples: list[float]) -> dict[str, float]:
    """Median, p95 and mean of samples in milliseconds."""
    arr = np.asarray(samples, dtype=float)
    return {"n": len(samples), "p50": round(float(np.percentile(arr, 50)), 2),
            "p95": round(float(np.percentile(arr, 95)), 2), "mean": round(float(arr.mean()), 2)}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work shares these cores, so every result records them."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, object]:
    """What the figures were measured on, and how busy it was when the run started."""
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "load_average": load_average()}


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    """A plain aligned table."""
    print(f"\n{title}")
    if not rows:
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in cols))


def emit(result: dict[str, object], as_json: bool) -> None:
    """Print the JSON object when asked (tables were printed already otherwise)."""
    if as_json:
        print(json.dumps(result, ensure_ascii=False))


def fake_llm(text: str, ttft_ms: float = 0.0, tokens_per_s: float = 50.0) -> FakeOpenAI:
    """A started fake OpenAI server (tests/support/fakes) answering every request with ``text`` at the given pace."""
    from tests.support.fakes.openai_server import FakeOpenAI, Reply

    interval = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
    fake = FakeOpenAI(lambda _request: Reply(text=text, ttft_s=ttft_ms / 1000, token_interval_s=interval))
    fake.start()
    return fake


def fake_llm_server_args(base_url: str, memory_dir: str) -> list[str]:
    """``server.py`` flags for a run against a fake LLM: no tool routing or fact extraction calls."""
    return ["--lm_model_url", base_url, "--lm_model_name", "fake", "--memory_dir", memory_dir,
            "--lm_tool_routing", "off", "--extract_facts", "off", "--log_level", "INFO"]
