"""A private, throw-away PostgreSQL server for the tests and the benchmarks.

Debian's ``postgresql`` package (the Makefile's test target installs it) provides
``initdb`` and ``pg_ctl`` under ``/usr/lib/postgresql/<version>/bin``. We start a
cluster in a temporary folder on a free loopback port, with its socket in that
folder too, so nothing touches a system cluster. PostgreSQL refuses to run as root,
so when we are root the cluster belongs to the ``postgres`` OS user (created by the
package) and its commands run through ``runuser``.

    with PrivatePostgres() as pg:
        dsn = pg.dsn   # postgresql://parley@127.0.0.1:PORT/parley
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found or started on this machine (the message says why)."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` that has ``initdb`` and ``pg_ctl``."""
    explicit = os.environ.get("PARLEY_PG_BIN")
    def major(p: Path) -> int:
        return int(p.parent.name) if p.parent.name.isdigit() else 0

    candidates = [Path(explicit)] if explicit else sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major,
                                                          reverse=True)
    for cand in candidates:
        if (Path(cand) / "initdb").is_file() and (Path(cand) / "pg_ctl").is_file():
            return Path(cand)
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise PostgresUnavailable("initdb/pg_ctl not found: install Debian's postgresql package "
                              "(bash scripts/setup-system.sh postgresql)")


class PrivatePostgres:
    """``initdb`` + ``pg_ctl start`` in a temp folder; stopped and deleted on exit."""

    def __init__(self, database: str = "parley", user: str = "parley") -> None:
        self.database = database
        self.user = user
        self.port = 0
        self.root: Path | None = None
        self._bin = Path()
        self._os_user: str | None = None

    @property
    def dsn(self) -> str:
        """A libpq URL for the test database (trust authentication on loopback: no password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # Root cannot run PostgreSQL: run its commands as the postgres OS user instead.
        full = ["runuser", "-u", self._os_user, "--", *cmd] if self._os_user else list(cmd)
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            raise PostgresUnavailable(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")

    def start(self) -> PrivatePostgres:
        """Create and start the cluster and the database; raises :class:`PostgresUnavailable`."""
        self._bin = find_bin_dir()
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and no 'postgres' OS user to own the cluster") from exc
            self._os_user = "postgres"
        self.root = Path(tempfile.mkdtemp(prefix="parley-pg-"))
        data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        if self._os_user:
            pw = pwd.getpwnam(self._os_user)
            for p in (self.root, sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._check(self._run(str(self._bin / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust",
                              "-E", "UTF8", "--no-locale", "--no-sync"), "initdb")
        last_error = ""
        for _ in range(3):  # a free port can be taken by someone else before we bind it: retry
            self.port = free_port()
            opts = (f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=on "
                    "-c max_connections=100 -c shared_buffers=32MB")
            proc = self._run(str(self._bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
                             "-o", opts, "-w", "-t", "30", "start")
            if proc.returncode == 0:
                break
            last_error = (proc.stderr or proc.stdout) + self.server_log()
        else:
            self.stop()
            raise PostgresUnavailable(f"pg_ctl start failed: {last_error[-2000:]}")
        try:  # through the driver, not createdb: initdb and pg_ctl are the only binaries needed
            import psycopg

            admin = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
            with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        except Exception as exc:
            self.stop()
            raise PostgresUnavailable(f"CREATE DATABASE failed: {exc}") from exc
        return self

    def server_log(self) -> str:
        if self.root is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder. Safe to call twice."""
        if self.root is None:
            return
        if (self.root / "data" / "postmaster.pid").exists():
            self._run(str(self._bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
