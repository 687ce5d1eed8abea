"""Helpers shared by the benchmark scripts: timing summaries, tables, machine facts."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
"""The repository root. Run benchmarks from it as modules: ``python -m bench.NAME``."""


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
