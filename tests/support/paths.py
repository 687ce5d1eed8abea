"""Where things are in the repository, for tests and benchmarks that start programs or read data."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (``server.py`` lives here); subprocesses run from it."""
ARTIFACTS = ROOT / "artifacts"
"""Screenshots, traces and other files a failed browser test leaves for a person to look at."""
BENCH_DATA = ROOT / "bench" / "data"
"""The benchmarks' fixed data sets (a regression test may read them; it never imports bench)."""
