"""``python -m agent.memory`` run as a subprocess on a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent.embedding import load_embedder
from agent.memory import MemoryStore
from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def memdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "mem"
    s = MemoryStore(d, embedder=load_embedder())
    ids = {
        "cat": s.add("alice", "I adopted a grey cat named Luna", session_id="s1"),
        "tea": s.add("alice", "I drink green tea every morning", session_id="s1"),
        "old": s.add_fact("alice", "User lives in Paris"),
        "new": s.add_fact("alice", "User lives in Rome"),
        "bob": s.add("bob", "Bob's memory about sailing"),
    }
    s.close()
    return d, ids


def cli(memdir, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    d, _ = memdir
    proc = subprocess.run(
        [sys.executable, "-m", "agent.memory", "--memory_dir", str(d), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_users(memdir):
    assert "alice" in cli(memdir, "users").stdout
    assert json.loads(cli(memdir, "--json", "users").stdout) == ["alice", "bob"]


def test_list_table_and_json(memdir):
    _, ids = memdir
    out = cli(memdir, "list", "--user", "alice").stdout
    assert ids["cat"] in out and "superseded by" in out and ids["bob"] not in out
    rows = json.loads(cli(memdir, "list", "--user", "alice", "--json", "--limit", "2").stdout)
    assert len(rows) == 2 and all(r["user_id"] == "alice" for r in rows)


def test_show(memdir):
    _, ids = memdir
    assert "grey cat" in cli(memdir, "show", "--user", "alice", ids["cat"]).stdout
    rec = json.loads(cli(memdir, "--json", "show", "--user", "alice", ids["old"]).stdout)
    assert rec["superseded_by"] == ids["new"]


def test_search_table_and_json(memdir):
    _, ids = memdir
    both = cli(memdir, "search", "--user", "alice", "what is my cat called", "-k", "2")
    assert ids["cat"] in both.stdout and "score" in both.stdout
    hits = json.loads(cli(memdir, "search", "--user", "alice", "where do I live", "--json").stdout)
    assert hits and hits[0]["id"] == ids["new"] and ids["old"] not in [h["id"] for h in hits]


def test_stats(memdir):
    assert "superseded" in cli(memdir, "stats", "--user", "alice").stdout
    st = json.loads(cli(memdir, "stats", "--user", "alice", "--json").stdout)
    assert st["total"] == 4 and st["superseded"] == 1 and st["index"]["vectors"] == 4


def test_export_stdout_and_file(memdir, tmp_path):
    lines = cli(memdir, "export", "--user", "alice").stdout.splitlines()
    assert len(lines) == 4 and all(json.loads(x)["user_id"] == "alice" for x in lines)
    out = tmp_path / "alice.jsonl"
    cli(memdir, "export", "--user", "alice", "--out", str(out))
    assert len(out.read_text().splitlines()) == 4


def test_errors_exit_non_zero(memdir):
    _, ids = memdir
    p = cli(memdir, "show", "--user", "alice", "0" * 32, ok=False)
    assert p.returncode == 1 and "no memory" in p.stderr
    p = cli(memdir, "show", "--user", "bob", ids["cat"], ok=False)  # another user's id
    assert p.returncode == 1
    p = cli(memdir, "list", "--user", "../x", ok=False)
    assert p.returncode == 2 and "invalid user id" in p.stderr
    p = cli(memdir, "delete", "--user", "alice", "not-an-id", ok=False)
    assert p.returncode == 2 and "invalid memory id" in p.stderr


def test_delete_and_clear(memdir):
    _, ids = memdir
    assert ids["tea"] in cli(memdir, "delete", "--user", "alice", ids["tea"]).stdout
    assert cli(memdir, "delete", "--user", "alice", ids["tea"], ok=False).returncode == 1
    p = cli(memdir, "clear", "--user", "bob", ok=False)
    assert p.returncode == 2 and "--yes" in p.stderr
    assert json.loads(cli(memdir, "--json", "clear", "--user", "bob", "--yes").stdout) == {"cleared": 1}
    assert json.loads(cli(memdir, "--json", "users").stdout) == ["alice"]
