"""Helpers shared by the benchmark scripts: timing summaries, tables, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # heavy or test-only modules, imported where used
    from speech.engines.base import TTS
    from tests.fakes.openai_server import FakeOpenAI

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


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """``python server.py`` running as a child process, the way a user starts it."""

    proc: subprocess.Popen[str]
    port: int
    ready_s: float
    """Seconds from spawning the process to its ``PARLEY_READY`` line."""
    log_path: Path
    """Where its stderr (the log) goes."""

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> bool:
        """SIGTERM (the server's clean shutdown), then kill if it hangs.

        Returns whether anything of its process group (e.g. the embedded LLM's child) outlived
        it; those are ended too, so a benchmark never leaves processes behind.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, 0)  # the group is ours: the server was started in a new session
        except ProcessLookupError:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        return True


def start_server(args: list[str], env: dict[str, str] | None = None, timeout_s: float = 300.0,
                 log_dir: Path | None = None, prefix: Sequence[str] = ()) -> ServerProcess:
    """Spawn ``python server.py --port FREE ARGS`` from the repository root and wait for ``PARLEY_READY``.

    ``prefix`` runs the server under another program, e.g. ``("heaptrack", "-o", "/tmp/parley")``.
    """
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="parley-bench-", suffix=".log", dir=log_dir)[1])
    start = time.perf_counter()
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([*prefix, sys.executable, "server.py", "--port", str(port), *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=log_file, text=True,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    assert proc.stdout is not None
    deadline = start + timeout_s
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = deadline - time.perf_counter()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"server not ready (exit {proc.returncode}); log:\n{log_path.read_text()[-3000:]}")
        if selector.select(min(left, 1.0)):
            line = proc.stdout.readline()
            if line.startswith("PARLEY_READY"):
                ready = time.perf_counter() - start
                break
    selector.close()
    # Nothing else is printed on stdout, but drain it so a chatty library could never block the server.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return ServerProcess(proc, port, ready, log_path)


def fake_llm(text: str, ttft_ms: float = 0.0, tokens_per_s: float = 50.0) -> FakeOpenAI:
    """A started fake OpenAI server (tests/fakes) answering every request with ``text`` at the given pace."""
    from tests.fakes.openai_server import FakeOpenAI, Reply

    interval = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
    fake = FakeOpenAI(lambda _request: Reply(text=text, ttft_s=ttft_ms / 1000, token_interval_s=interval))
    fake.start()
    return fake


def fake_llm_server_args(base_url: str, memory_dir: str) -> list[str]:
    """``server.py`` flags for a run against a fake LLM: no tool routing or fact extraction calls."""
    return ["--lm_model_url", base_url, "--lm_model_name", "fake", "--memory_dir", memory_dir,
            "--lm_tool_routing", "off", "--extract_facts", "off", "--log_level", "INFO"]


def to_16k(tts: TTS, text: str, language: str = "en") -> np.ndarray:
    """Speech for ``text`` made by the embedded TTS, as 16 kHz int16 (what a microphone client would send)."""
    from speech.audio import resample_pcm16

    pcm = np.concatenate(list(tts.synthesize(text, language)))
    return resample_pcm16(pcm, tts.sample_rate, 16000)
