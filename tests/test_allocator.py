"""speech/allocator.py: the cap on glibc malloc arenas holds, in a fresh process each time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from speech.allocator import arena_count, limit_arenas
from tests.support.paths import ROOT

# Eight threads allocate at the same time: without a cap glibc gives them arenas of their own.
BUSY_THREADS = """
import json, sys, threading
from speech.allocator import arena_count, limit_arenas
limited = limit_arenas(int(sys.argv[1]))
start = threading.Barrier(8)
def work():
    start.wait()
    for _ in range(300):
        kept = [bytearray(5000) for _ in range(40)]
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"limited": limited, "arenas": arena_count()}))
"""


def run_fresh(snippet: str, *args: str) -> dict:
    """Run ``snippet`` in a new interpreter (malloc settings are per process) and read its JSON line."""
    out = subprocess.run([sys.executable, "-c", snippet, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def arenas_after_busy_threads(limit: int) -> dict:
    return run_fresh(BUSY_THREADS, str(limit))


pytestmark = pytest.mark.skipif(arena_count() is None, reason="the C library is not glibc")


def test_threads_share_the_capped_arenas():
    capped = arenas_after_busy_threads(2)
    assert capped == {"limited": True, "arenas": 2}


def test_without_a_cap_busy_threads_get_more_arenas():
    """The control: the same load under glibc's default makes more arenas, so the test above can fail."""
    default = arenas_after_busy_threads(0)
    assert default["limited"] is True
    assert default["arenas"] > 2, default


def test_a_negative_cap_is_refused():
    with pytest.raises(ValueError, match="0 \\(default\\) or more"):
        limit_arenas(-1)


def test_server_refuses_a_negative_cap():
    out = subprocess.run([sys.executable, "server.py", "--malloc_arena_max", "-1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert "--malloc_arena_max must be 0" in out.stderr


# Two threads fill their arenas with small blocks and keep one in twenty: the rest is free but resident.
FRAGMENTED = """
import json, threading, time, psutil
from speech.allocator import limit_arenas, release_free_memory
limit_arenas(2)
rss = lambda: psutil.Process().memory_info().rss / 2**20
kept = []
def work():
    blocks = [bytearray(3000) for _ in range(70000)]
    kept.extend(blocks[::20])
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
before = rss()
untouched = rss()
started = time.perf_counter()
released = release_free_memory()
took_ms = (time.perf_counter() - started) * 1000
print(json.dumps({"before": before, "untouched": untouched, "released": released, "after": rss(), "ms": took_ms}))
"""


def test_trimming_gives_freed_memory_back():
    mb = run_fresh(FRAGMENTED)
    assert mb["released"] is True
    assert mb["untouched"] > mb["before"] - 20, mb  # glibc does not give it back by itself
    assert mb["after"] < mb["before"] - 200, mb  # about 400 MB were allocated and 95% freed
    print(f"\ntrim: {mb['before']:.0f} -> {mb['after']:.0f} MB in {mb['ms']:.0f} ms")
