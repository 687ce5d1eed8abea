"""The embedded offline LLM: a GGUF model (see agent/embedded_models.py) served by llama.cpp.

llama.cpp comes from the ``xllamacpp`` binary wheel (no compiler at install time). Its own C++
OpenAI-compatible HTTP server runs in a child process (``python -m agent.embedded_llm``), so the
agent talks to every model, remote or embedded, through the same ``ChatOpenAI`` client, token
generation never holds our event loop or GIL, and a crash of the model cannot take Parley down.
The child exits when its stdin closes, so it never outlives Parley, even after a ``kill -9``.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import secrets
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.config import AgentSettings
from agent.embedded_models import DEFAULT_EMBEDDED_MODEL, EmbeddedModel, cache_dir, get_embedded_model
from agent.prompt_slots import PromptSlots

log = logging.getLogger(__name__)

EMBEDDED_NOTICE = (
    "No LLM_API_KEY and no --lm_model_url: using the embedded offline demo model "
    "{model} (small, sometimes wrong). For real answers set "
    "LLM_API_KEY (DeepSeek by default) or point --lm_model_url at any OpenAI-compatible server."
)

READY_PREFIX = "PARLEY_LLM_READY "
# The child's API key comes through its environment, not its command line (which `ps` shows anyone).
KEY_ENV = "PARLEY_EMBEDDED_LLM_KEY"


def llm_threads() -> int:
    """llama.cpp threads: ``$PARLEY_LLM_THREADS``, else 2 (both cores).

    On an idle machine two threads are faster; when the cores are shared (other work, or Parley's
    own Whisper and TTS), llama.cpp's threads wait for each other at every step: at load 5 on two
    cores, generation ran at 0.4-1.4 tokens/s with two threads and 4-5.4 with one, and the model
    was ready in 2.5-2.9 s instead of 4.8-10.7 (reading a 270-token prompt took about as long).
    """
    try:
        return max(1, int(os.environ.get("PARLEY_LLM_THREADS", "2")))
    except ValueError:
        return 2


class EmbeddedLLMServer:
    """A llama.cpp OpenAI-compatible server on a loopback port, stopped at exit."""

    def __init__(self, model: str | EmbeddedModel = DEFAULT_EMBEDDED_MODEL, model_path: Path | None = None,
                 n_ctx: int = 8192, parallel: int = 2, threads: int | None = None) -> None:
        self.model = model if isinstance(model, EmbeddedModel) else get_embedded_model(model)
        self._model_path = model_path
        self.model_name = self.model.alias
        self.base_url = ""
        self._n_ctx, self._parallel, self._threads = n_ctx, parallel, threads or llm_threads()
        # A key of this start's own: without it any local process could use the model or read its
        # slots (llama.cpp's /slots endpoints, which the prompt cache below needs, are on by default).
        self.api_key = secrets.token_urlsafe(24)
        self.slot_dir = cache_dir() / "llm-slots"
        self._proc: subprocess.Popen[str] | None = None
        # llama.cpp logs a lot; a pipe nobody reads would fill and stall it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child process

    def launch(self) -> EmbeddedLLMServer:
        """Start the child process without waiting for it (pair with :meth:`wait_ready`).

        The child finds the model file itself: on a first start that means joining the chunk packages
        into the cache (half a gigabyte read, hashed and written), which then overlaps our imports
        instead of holding them up (fresh ``make run``).
        """
        where = ["--model", str(self._model_path)] if self._model_path else ["--model_key", self.model.key]
        cmd = [sys.executable, "-m", "agent.embedded_llm", *where, "--alias", self.model_name,
               "--n_ctx", str(self._n_ctx), "--parallel", str(self._parallel), "--threads", str(self._threads),
               "--slot_dir", str(self.slot_dir)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                      text=True, cwd=Path(__file__).resolve().parent.parent,
                                      env={**os.environ, KEY_ENV: self.api_key})
        atexit.register(self.stop)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> EmbeddedLLMServer:
        """Wait until the child has loaded the model and reports its address."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise RuntimeError("embedded LLM server was not launched")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = proc.stdout.readline()
            if not line:  # EOF: the child died
                proc.wait()
                self._proc = None
                raise RuntimeError(f"embedded LLM server exited at start-up: {self._log_tail()}")
            if line.startswith(READY_PREFIX):
                self.base_url = line[len(READY_PREFIX):].strip() + "/v1"
                log.info("embedded LLM %s ready at %s", self.model_name, self.base_url)
                return self
        self.stop()
        raise TimeoutError(f"embedded LLM server not ready after {timeout_s:.0f} s")

    def start(self, timeout_s: float = 120.0) -> EmbeddedLLMServer:
        """Start the child process and wait until it serves."""
        return self.launch().wait_ready(timeout_s)

    def warm_up(self, system_prompts: list[str], timeout_s: float = 60.0) -> dict[str, int] | None:
        """Have llama.cpp hold each system prompt in a slot of its own, to fill its prompt cache.

        The first turn after start then does not pay for reading the prompt (bench.startup). Each
        prompt is read once and its slot saved; later starts restore it (agent/prompt_slots.py).

        A failure here is logged, not raised: the model still serves, only the first turn is slower.
        Returns how many prompts were restored and how many read, or None after a failure.
        """
        slots = PromptSlots(self.base_url, self.api_key, self.model_name, self._slot_folder(),
                            self._identity(), timeout_s)
        try:
            counts = slots.fill(system_prompts[: self._parallel])
        except OSError as exc:
            log.warning("embedded LLM warm-up failed: %s", exc)
            return None
        log.info("embedded LLM warm-up: %d prompts restored, %d read", counts["restored"], counts["read"])
        return counts

    def _slot_folder(self) -> Path | None:
        try:
            self.slot_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only cache: read the prompts at every start
            log.warning("embedded LLM: no prompt cache folder (%s)", exc)
            return None
        return self.slot_dir

    def _identity(self) -> tuple[str, ...]:
        """What a saved slot's state depends on besides its prompt."""
        from importlib.metadata import version

        model = str(self._model_path) if self._model_path else self.model.key
        if self._model_path and self._model_path.is_file():
            stat = self._model_path.stat()
            model += f":{stat.st_size}:{stat.st_mtime_ns}"
        return (model, f"xllamacpp {version('xllamacpp')}", f"n_ctx {self._n_ctx}")

    @property
    def pid(self) -> int | None:
        """The child process's id while it runs (for benchmarks and operators)."""
        return self._proc.pid if self._proc is not None else None

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stop the child process (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the child's signal to leave
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launch_embedded(config: AgentSettings) -> EmbeddedLLMServer | None:
    """Start the embedded model's process when no remote LLM is configured, without waiting for it.

    This module imports nothing heavy, so a caller can launch the model before it imports the
    rest of Parley; the model loads meanwhile, and ``build_chat_models`` then waits for it.
    """
    if not config.uses_embedded_llm:
        return None
    embedded = EmbeddedLLMServer(config.lm_embedded_model)
    log.warning(EMBEDDED_NOTICE.format(model=embedded.model.description))
    return embedded.launch()


def _serve(args: argparse.Namespace) -> int:
    """Child process: find the model (joining its chunks once), load it, print the address, serve.

    It serves until its stdin closes.
    """
    import xllamacpp as xlc  # heavy native library: only the child imports it

    params = xlc.CommonParams()
    params.model.path = args.model or str(get_embedded_model(args.model_key).locate())
    params.model_alias = args.alias
    params.n_ctx = args.n_ctx
    params.n_parallel = args.parallel  # continuous batching: sessions decode side by side
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the OS picks a free port; we print it
    # Small models loop on a phrase without a repetition penalty (measured: bench/embedded_llm.py).
    params.sampling.penalty_repeat = args.repeat_penalty
    key = os.environ.get(KEY_ENV)
    if key:
        params.api_keys = [key]
    if args.slot_dir:
        # The parent creates the folder before it saves a slot (or, if it cannot, never asks for a save):
        # a read-only cache must not stop the model from starting.
        params.slot_save_path = args.slot_dir.rstrip("/") + "/"  # llama.cpp appends the file name as is
    server = xlc.Server(params)
    print(READY_PREFIX + server.listening_address, flush=True)
    try:
        while os.read(sys.stdin.fileno(), 4096):  # returns b"" when Parley closes the pipe or dies
            pass
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m agent.embedded_llm")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="GGUF file")
    where.add_argument("--model_key", help="a catalogued model (agent/embedded_models.py), joined into the cache once")
    parser.add_argument("--alias", required=True)
    parser.add_argument("--n_ctx", type=int, default=8192)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat_penalty", type=float, default=1.1)
    parser.add_argument("--slot_dir", default="", help="folder for saved slots (agent/prompt_slots.py)")
    return _serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
