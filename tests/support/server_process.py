"""``python server.py`` as a child process, the way a user starts it: for tests and benchmarks alike."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from tests.support.paths import ROOT

READY_PREFIX = "PARLEY_READY "
"""The line server.py prints on stdout once it listens, followed by its HTTP root URL."""


class ServerProcess:
    """``python server.py --host 127.0.0.1 --port 0 ARGS`` in its own process group.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Once started,
    ``url`` is the HTTP root (``http://127.0.0.1:PORT/``), ``port`` the port the server
    chose, ``ready_s`` the seconds from spawning to its ready line, and ``lines`` every line
    it wrote on stdout and stderr so far (read all along, so a chatty server never blocks
    on a full pipe). ``prefix`` runs it under another program, e.g. a profiler.
    """

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, timeout_s: float = 300.0,
                 prefix: Sequence[str] = ()) -> None:
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.timeout_s = timeout_s
        self.prefix = list(prefix)
        self.lines: list[str] = []
        self.url = ""
        self.ready_s = 0.0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (0 before it is ready)."""
        return int(self.url.rstrip("/").rsplit(":", 1)[1]) if self.url else 0

    @property
    def ws_url(self) -> str:
        """The voice socket's address."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> ServerProcess:
        """Spawn the server and wait for its ready line; raises with its log if it exits or times out first."""
        cmd = [*self.prefix, sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1", "--port", "0",
               *self.args]
        started = time.perf_counter()
        # A new session: stop() can then end whatever the server started (the embedded LLM's child) too.
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True)
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if line.startswith(READY_PREFIX) and not self.url:
                    self.ready_s = time.perf_counter() - started
                    self.url = line[len(READY_PREFIX):].strip()
                    ready.set()
            ready.set()  # the output ended: the server exited

        threading.Thread(target=pump, name="server-output", daemon=True).start()
        if not ready.wait(self.timeout_s):
            self.stop()
            raise TimeoutError(f"server not ready in {self.timeout_s} s:\n{self.log()}")
        if not self.url:
            self.stop()
            raise RuntimeError(f"server exited ({self.proc.poll()}) before it was ready:\n{self.log()}")
        return self

    def log(self, last: int | None = None) -> str:
        """What the server wrote so far (its last ``last`` lines if given)."""
        return "\n".join(self.lines if last is None else self.lines[-last:])

    def stop(self) -> bool:
        """SIGTERM (the server's clean shutdown), then kill if it hangs. Safe to call twice.

        Returns whether anything of its process group outlived it; those are ended too, so
        neither a test nor a benchmark ever leaves processes behind.
        """
        if self.proc is None:
            return False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        return True

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
